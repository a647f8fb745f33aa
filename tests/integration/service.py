"""Runs `agent-executor serve` as a real process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BASE_ENV_DROP = ("POSTGRES_", "DRAGONFLY_", "NATS_", "AGENT_EXECUTOR_", "OPENAI_", "ANTHROPIC_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def migrate(env: Mapping[str, str]) -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts/ci/run-migrations.sh")],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


class ServiceProcess:
    def __init__(self, env: Mapping[str, str], data_dir: Path, port: int | None = None,
                 args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.args = list(args)
        self.data_dir = data_dir
        clean = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
        self.env = {**clean, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "AGENT_EXECUTOR_DATA_DIR": str(data_dir), "LOG_LEVEL": "INFO", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent_executor", "serve",
                                          *self.args],
                                         env=self.env, stdout=log, stderr=log)
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: self._healthy(client), timeout,
                           f"service on :{self.port} to answer /health ({self.log})")
        return self

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited {self.proc.returncode}: "
                                 f"{self.log.read_text()[-3000:]}")
        try:
            return (await client.get(f"{self.url}/health", timeout=1)).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


async def wait_for(check: Callable[[], Any], timeout: float, what: str,
                   interval: float = 0.05) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)
