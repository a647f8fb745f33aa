"""The backing services of one bench run: stand-ins, a database, streams, keys.

Stand-ins are started only where nothing listens (scripts/test-services.sh,
with a state directory of the run's own, so `stop` stops only what this run
started). Everything else is created with the run's unique tag and removed at
the end: the database (dropped), the JetStream streams and consumer, and the
Dragonfly keys of the run's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import nats
import redis.asyncio as aioredis
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from agent_executor.adapters.config import NatsSettings, PostgresSettings
from agent_executor.adapters.nats.streams import ensure_local_streams
from bench.jobs import ROOT

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"
CHANNEL_PREFIX = "langgraph:stream:"


@dataclass(frozen=True)
class Ports:
    postgres: int = int(os.environ.get("TEST_POSTGRES_PORT", "15433"))
    dragonfly: int = int(os.environ.get("TEST_DRAGONFLY_PORT", "16380"))
    nats: int = int(os.environ.get("TEST_NATS_PORT", "14222"))


def _script_env(ports: Ports, state: Path) -> dict[str, str]:
    return {**os.environ, "TEST_SERVICES_DIR": str(state),
            "TEST_POSTGRES_PORT": str(ports.postgres),
            "TEST_DRAGONFLY_PORT": str(ports.dragonfly), "TEST_NATS_PORT": str(ports.nats)}


def start_stand_ins(ports: Ports, state: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts/test-services.sh"), "start"],
                          env=_script_env(ports, state), capture_output=True, text=True,
                          timeout=180)
    for line in (done.stdout + done.stderr).splitlines():
        logger.info("%s", line)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/test-services.sh start failed:\n{done.stdout}{done.stderr}")


def stop_stand_ins(ports: Ports, state: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/test-services.sh"), "stop"],
                   env=_script_env(ports, state), capture_output=True, text=True, timeout=120)


@contextlib.asynccontextmanager
async def backing_servers(prefix: str) -> AsyncIterator[tuple[Backing, Path]]:
    """The run's backing (stand-ins started where nothing listens on the test ports, a
    database, streams) and a work directory; all removed afterwards."""
    ports = Ports()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # a PostgreSQL stand-in runs as `postgres` under it
    state = workdir / "services"
    try:
        await asyncio.to_thread(start_stand_ins, ports, state)
        backing = await Backing.open(uuid.uuid4().hex[:8], ports)
        try:
            yield backing, workdir
        finally:
            await backing.close()
    finally:
        await asyncio.to_thread(stop_stand_ins, ports, state)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Backing:
    """The run's database, streams and clients; `close` removes what it created."""

    tag: str
    ports: Ports
    postgres: PostgresSettings
    nats_settings: NatsSettings
    status_stream: str
    nc: Client
    redis: aioredis.Redis

    @property
    def job_prefix(self) -> str:
        return f"bench-{self.tag}-"

    def service_env(self) -> dict[str, str]:
        pg, ns = self.postgres, self.nats_settings
        return {"AGENT_EXECUTOR_PROFILE": "production",
                "POSTGRES_HOST": pg.host, "POSTGRES_PORT": str(pg.port),
                "POSTGRES_DB": pg.database, "POSTGRES_USER": pg.user,
                "POSTGRES_PASSWORD": pg.password, "POSTGRES_SCHEMA": pg.schema,
                "DRAGONFLY_HOST": HOST, "DRAGONFLY_PORT": str(self.ports.dragonfly),
                "NATS_URL": ns.url, "NATS_STREAM_NAME": ns.stream_name,
                "NATS_CONSUMER_GROUP": ns.consumer_group, "NATS_SUBJECT": ns.subject,
                "NATS_STATUS_SUBJECT_PREFIX": ns.status_subject_prefix}

    @classmethod
    async def open(cls, tag: str, ports: Ports) -> Backing:
        database = f"bench_{tag}"
        # trust auth ignores the password; the production profile requires one.
        postgres = PostgresSettings(host=HOST, port=ports.postgres, database=database,
                                    user="postgres", password="bench", schema="public")
        settings = NatsSettings(url=f"nats://{HOST}:{ports.nats}",
                                stream_name=f"BENCH_{tag.upper()}_EXECUTION",
                                consumer_group=f"bench-{tag}-workers",
                                subject=f"bench{tag}.execute.*",
                                status_subject_prefix=f"bench{tag}.status")
        status_stream = f"BENCH_{tag.upper()}_STATUS"
        nc = await nats.connect(settings.url, connect_timeout=5, max_reconnect_attempts=5)
        try:
            admin = await asyncpg.connect(host=HOST, port=ports.postgres, user="postgres",
                                          database="postgres", timeout=10)
            try:
                await admin.execute(f'CREATE DATABASE "{database}"')
            finally:
                await admin.close()
        except BaseException:
            await nc.close()
            raise
        backing = cls(tag, ports, postgres, settings, status_stream, nc,
                      aioredis.Redis(host=HOST, port=ports.dragonfly, socket_timeout=10))
        try:
            await asyncio.to_thread(backing._migrate)
            # production profile: streams and consumer come from the deploy, so create them
            await ensure_local_streams(nc.jetstream(), settings, status_stream=status_stream)
        except BaseException:
            await backing.close()
            raise
        return backing

    def _migrate(self) -> None:
        env = {**os.environ, **self.service_env(), "MIGRATIONS_WAIT_SECONDS": "30"}
        done = subprocess.run(["bash", str(ROOT / "scripts/ci/run-migrations.sh")], env=env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{done.stdout}{done.stderr}")

    async def close(self) -> None:
        js = self.nc.jetstream()
        for stream in (self.nats_settings.stream_name, self.status_stream):
            try:
                await js.delete_stream(stream)
            except NotFoundError:
                pass
            except Exception as exc:  # cleanup goes on
                logger.warning("could not delete stream %s: %s", stream, exc)
        await self.nc.close()
        try:
            keys = [k async for k in self.redis.scan_iter(f"{CHANNEL_PREFIX}{self.job_prefix}*",
                                                          count=1000)]
            for start in range(0, len(keys), 1000):
                await self.redis.unlink(*keys[start:start + 1000])
        except Exception as exc:
            logger.warning("could not delete the run's Dragonfly keys: %s", exc)
        await self.redis.aclose()
        try:
            admin = await asyncpg.connect(host=HOST, port=self.ports.postgres, user="postgres",
                                          database="postgres", timeout=10)
            try:
                await admin.execute(
                    f'DROP DATABASE IF EXISTS "{self.postgres.database}" WITH (FORCE)')
            finally:
                await admin.close()
        except Exception as exc:
            logger.warning("could not drop database %s: %s", self.postgres.database, exc)


@dataclass(frozen=True)
class ProcessSample:
    rss_mb: float
    hwm_mb: float
    user_seconds: float
    system_seconds: float
    main_thread_seconds: float

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The share of the machine's CPU time that was busy between two samples."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else 0.0


def sample_process(pid: int) -> ProcessSample:
    """VmRSS, VmHWM (peak RSS) and user+system CPU time, from /proc."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    ticks = os.sysconf("SC_CLK_TCK")
    user, system = _cpu_ticks(f"/proc/{pid}/stat")
    main = sum(_cpu_ticks(f"/proc/{pid}/task/{pid}/stat"))
    return ProcessSample(fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0),
                         user / ticks, system / ticks, main / ticks)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (a supervisor's workers, their helpers)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(c) for c in children.read().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def sample_tree(pid: int) -> ProcessSample:
    """`sample_process` summed over `pid` and its descendants (with `WORKERS` > 1 the
    supervisor and every worker; their RSS and peaks added up): a child that exits
    between two samples takes its CPU time with it, so keep them alive meanwhile."""
    samples = [sample_process(pid)]
    for child in descendants(pid):
        try:
            samples.append(sample_process(child))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return ProcessSample(*(sum(getattr(s, name) for s in samples) for name in (
        "rss_mb", "hwm_mb", "user_seconds", "system_seconds", "main_thread_seconds")))


def _cpu_ticks(path: str) -> tuple[int, int]:
    with open(path) as stat:
        # the fields after the command name (which may hold spaces) start at `state`
        after = stat.read().rsplit(")", 1)[1].split()
    return int(after[11]), int(after[12])
