"""The service path: `agent-executor serve` as a subprocess, jobs through NATS.

`closed_loop` keeps exactly C jobs outstanding (a new one is published when
one's result arrives), so latency is a job's own time at concurrency C, not
time spent queued behind the rest of the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bench.jobs import ROOT, job_data, structured_event
from bench.report import Measurement, Progress
from bench.servers import (
    CHANNEL_PREFIX,
    Backing,
    busy_share,
    machine_busy_seconds,
    sample_process,
    sample_tree,
)

DROP_ENV = ("POSTGRES_", "DRAGONFLY_", "NATS_", "AGENT_EXECUTOR_", "OPENAI_", "ANTHROPIC_")
HEADERS = {"Content-Type": "application/cloudevents+json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server subprocess on `port` (free when chosen), its output in `log`; ready once
    `GET {ready_path}` answers 200. `stop` is SIGTERM, then SIGKILL."""

    name = "server"

    def __init__(self, command: list[str], env: dict[str, str], log: Path, port: int, *,
                 cwd: Path = ROOT, ready_path: str = "/ready") -> None:
        self.command = command
        clean = {k: v for k, v in os.environ.items() if not k.startswith(DROP_ENV)}
        self.env = {**clean, **env}
        self.log = log
        self.port = port
        self.cwd = cwd
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 90.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                         cwd=self.cwd)
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop(timeout=5)
            raise

    async def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(f"{self.url}{self.ready_path}", timeout=2)
                    if answer.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready within {timeout:g}s:\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (drain), then SIGKILL if it has not exited within `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait, 10)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class ServeProcess(ServerProcess):
    """`python -m agent_executor serve`, production profile, its log in `log`."""

    name = "serve"

    def __init__(self, env: dict[str, str], log: Path) -> None:
        port = free_port()
        super().__init__([sys.executable, "-m", "agent_executor", "serve"],
                         {"HOST": "127.0.0.1", "PORT": str(port), **env}, log, port)


async def closed_loop(count: int, concurrency: int,
                      run_one: Callable[[int], Awaitable[None]]) -> float:
    """Run `run_one(0..count-1)` with `concurrency` in flight; the wall time in seconds."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await run_one(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return time.perf_counter() - started


class FirstEvents:
    """Subscribes to each job's Dragonfly channel before it is published; keeps the
    arrival time of its first event, then unsubscribes (so the bench does not spend
    the CPU the service needs on parsing every token)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.first: dict[str, float] = {}
        self._pubsub = redis.pubsub()
        self._reader: asyncio.Task[None] | None = None

    async def watch(self, job_ids: Sequence[str], timeout: float = 60.0) -> None:
        channels = [f"{CHANNEL_PREFIX}{job_id}" for job_id in job_ids]
        async with asyncio.timeout(timeout):
            for start in range(0, len(channels), 500):
                await self._pubsub.subscribe(*channels[start:start + 500])
            confirmed = 0
            while confirmed < len(channels):
                message = await self._pubsub.get_message(timeout=timeout)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        skip = len(CHANNEL_PREFIX)
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                     timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            now = time.perf_counter()
            channel = message["channel"]
            job_id = (channel.decode() if isinstance(channel, bytes) else channel)[skip:]
            if job_id not in self.first:
                self.first[job_id] = now
                await self._pubsub.unsubscribe(channel)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class NatsDriver:
    """Publishes jobs to the run's intake subject and waits for their result events."""

    def __init__(self, backing: Backing, job_timeout: float) -> None:
        self.backing = backing
        self.job_timeout = job_timeout
        self.subject = backing.nats_settings.subject.replace("*", "bench")
        self._waiting: dict[str, asyncio.Future[tuple[str, float]]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        prefix = self.backing.nats_settings.status_subject_prefix
        self._sub = await self.backing.nc.subscribe(f"{prefix}.*", cb=self._on_result)

    async def _on_result(self, msg: Msg) -> None:
        now = time.perf_counter()
        job_id, _, status = (msg.headers or {}).get("Nats-Msg-Id", "").rpartition(":")
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.set_result((status, now))

    async def measure(self, label: str, shape: str, template: dict[str, Any],
                      job_ids: Sequence[str], concurrency: int, pid: int,
                      every: Callable[[int], None] | None = None,
                      progress: bool = True) -> Measurement:
        bodies = [structured_event(job_data(template, job_id)) for job_id in job_ids]
        firsts = FirstEvents(self.backing.redis)
        await firsts.watch(job_ids)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        failed = 0
        bar = Progress(label, len(job_ids)) if progress else None
        js = self.backing.nc.jetstream()
        loop = asyncio.get_running_loop()

        async def run_one(index: int) -> None:
            nonlocal failed
            job_id = job_ids[index]
            future: asyncio.Future[tuple[str, float]] = loop.create_future()
            self._waiting[job_id] = future
            sent[job_id] = started = time.perf_counter()
            await js.publish(self.subject, bodies[index], headers=HEADERS)
            try:
                status, arrived = await asyncio.wait_for(future, self.job_timeout)
            except TimeoutError as exc:
                raise RuntimeError(
                    f"no result for {job_id} within {self.job_timeout:g}s") from exc
            latencies.append((arrived - started) * 1000)
            failed += status != "completed"
            if bar is not None:
                bar.advance()
            if every is not None:
                every(len(latencies))

        before, client = sample_tree(pid), sample_process(os.getpid())
        busy = machine_busy_seconds()
        try:
            seconds = await closed_loop(len(job_ids), concurrency, run_one)
            # a first event precedes its result, but may still sit in the reader's socket
            deadline = time.monotonic() + 5
            while len(firsts.first) < len(job_ids) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            if bar is not None:
                bar.close()
            await firsts.close()
        after, client_after = sample_tree(pid), sample_process(os.getpid())
        busy_after = machine_busy_seconds()
        first_ms = [(firsts.first[j] - sent[j]) * 1000 for j in job_ids if j in firsts.first]
        return Measurement("service", shape, concurrency, len(job_ids), seconds, latencies,
                           first_ms, failed=failed, rss_peak_mb=after.hwm_mb,
                           rss_end_mb=after.rss_mb,
                           cpu_seconds=after.cpu_seconds - before.cpu_seconds,
                           system_seconds=after.system_seconds - before.system_seconds,
                           main_thread_seconds=(after.main_thread_seconds
                                                - before.main_thread_seconds),
                           client_cpu_seconds=client_after.cpu_seconds - client.cpu_seconds,
                           machine_busy=busy_share(busy, busy_after))

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
