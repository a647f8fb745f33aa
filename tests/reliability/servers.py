"""Throwaway backing servers a fault test owns: a PostgreSQL cluster, a redis-server
(standing in for Dragonfly) and a `nats-server -js`, each on a free port with its
data under a temporary directory, so a test can stop and restart them without
touching anything else.

Every method is synchronous (safe in a finalizer); tests call `stop`/`start`
mid-load through `asyncio.to_thread`. `close()` stops the server and removes its
data; it may be called any number of times.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Bounded polling (blocking): `check` until true, else `AssertionError`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class _Process:
    """A server that runs as our child process; `stop` terminates it (SIGTERM,
    SIGKILL after a bound)."""

    name = "server"

    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"ae-reliability-{prefix}-"))
        self.port = free_port()
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         start_new_session=True)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: "
                                     f"{_tail(self.log)}")
            return listening(self.port)
        poll(up, START_TIMEOUT_SECONDS, f"{self.name} on port {self.port}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer(_Process):
    """redis-server with no persistence: a restart starts empty, like a new Dragonfly pod."""

    name = "redis-server"

    def __init__(self) -> None:
        super().__init__("redis")
        self.binary = shutil.which("redis-server") or "redis-server"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.root)]

    def env(self) -> dict[str, str]:
        return {"DRAGONFLY_HOST": HOST, "DRAGONFLY_PORT": str(self.port)}


class NatsServer(_Process):
    """nats-server with JetStream; its store survives `stop`/`start`."""

    name = "nats-server"

    def __init__(self) -> None:
        super().__init__("nats")
        self.binary = shutil.which("nats-server") or "nats-server"

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-js", "-a", HOST, "-p", str(self.port),
                "-sd", str(self.root / "jetstream")]

    def env(self) -> dict[str, str]:
        return {"NATS_URL": self.url}


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for candidate in reversed(versions):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    return Path(initdb).parent


class PostgresServer:
    """A PostgreSQL cluster of its own (trust auth, fsync off), run through pg_ctl as
    the `postgres` user when the tests run as root."""

    name = "postgres"
    user = "postgres"
    password = "unused-trust-auth"  # the production profile requires one to be set

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ae-reliability-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.bin = _pg_bin()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, user="postgres")
        self._initialised = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                                 f"{done.stdout}{done.stderr}{_tail(self.log)}")

    def start(self) -> None:
        if not self._initialised:
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                      "--auth=trust", "-E", "UTF8", "--no-sync")
            self._initialised = True
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", "60", "-o", options, "start")
        poll(lambda: listening(self.port), START_TIMEOUT_SECONDS, f"postgres on {self.port}")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self, mode: str = "fast") -> None:
        if self._initialised and self.running:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "-t", "60", "stop")

    def create_database(self, name: str) -> None:
        done = subprocess.run(["psql", "-X", "-q", "-h", HOST, "-p", str(self.port), "-U",
                               self.user, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def env(self, database: str) -> dict[str, str]:
        return {"POSTGRES_HOST": HOST, "POSTGRES_PORT": str(self.port),
                "POSTGRES_DB": database, "POSTGRES_USER": self.user,
                "POSTGRES_PASSWORD": self.password, "POSTGRES_SCHEMA": "public"}

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
