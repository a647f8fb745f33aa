"""Runs `agent-executor serve` as a real process for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from agent_executor.adapters.config import NatsSettings
from agent_executor.adapters.nats.streams import ensure_local_streams
from tests.integration.conftest import PostgresDatabase

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


@dataclass(frozen=True)
class ProductionBacking:
    """What `serve` in the production profile needs, made for one test."""

    env: dict[str, str]  # the service's variables
    nats: NatsSettings
    status_stream: str
    nc: Client


@contextlib.asynccontextmanager
async def production_backing(postgres: PostgresDatabase, nats_url: str, dragonfly_port: int,
                             prefix: str) -> AsyncIterator[ProductionBacking]:
    """Streams and a consumer of the test's own (in production they come from the
    deploy, not the service) and a migrated database; the streams are deleted after."""
    tag = uuid.uuid4().hex[:8]
    settings = NatsSettings(url=nats_url, stream_name=f"{prefix.upper()}_{tag.upper()}",
                            consumer_group=f"{prefix}-{tag}", subject=f"{prefix}{tag}.execute.*",
                            status_subject_prefix=f"{prefix}{tag}.status")
    status_stream = f"{prefix.upper()}_{tag.upper()}_STATUS"
    nc = await nats.connect(nats_url)
    try:
        await ensure_local_streams(nc.jetstream(), settings, status_stream=status_stream)
        env = {**postgres.env(), "AGENT_EXECUTOR_PROFILE": "production",
               "POSTGRES_PASSWORD": "ignored-by-trust-auth",
               "DRAGONFLY_HOST": "127.0.0.1", "DRAGONFLY_PORT": str(dragonfly_port),
               "NATS_URL": nats_url, "NATS_STREAM_NAME": settings.stream_name,
               "NATS_CONSUMER_GROUP": settings.consumer_group,
               "NATS_SUBJECT": settings.subject,
               "NATS_STATUS_SUBJECT_PREFIX": settings.status_subject_prefix}
        await asyncio.to_thread(migrate, env)
        yield ProductionBacking(env, settings, status_stream, nc)
    finally:
        for stream in (settings.stream_name, status_stream):
            with contextlib.suppress(NotFoundError):
                await nc.jetstream().delete_stream(stream)
        await nc.close()


class ServiceProcess:
    def __init__(self, env: Mapping[str, str], data_dir: Path, port: int | None = None,
                 args: Sequence[str] = (), new_session: bool = False) -> None:
        self.port = port or free_port()
        self.args = list(args)
        self.new_session = new_session  # its own process group, as a terminal's job is
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
                                         env=self.env, stdout=log, stderr=log,
                                         start_new_session=self.new_session)
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
