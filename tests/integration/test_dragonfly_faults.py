"""DragonflyEventStream when Dragonfly fails: a redis-server of each test's own, killed
and restarted (empty, like a new Dragonfly pod). Writers keep what they could not send
and deliver it, `end` included, once it is back; followers ride out a restart or are
told they cannot be served."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agent_executor.adapters.config import DragonflySettings
from agent_executor.adapters.dragonfly.event_stream import DragonflyEventStream
from agent_executor.adapters.dragonfly.probe import DragonflyReadinessProbe
from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END, LLM_STREAM, StreamEvent
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job
from agent_executor.domain.result import AgentOutput, JobResult
from agent_executor.domain.usage import Usage
from agent_executor.ports.runtime import EventSink
from tests.event_stream_contract import collect as _collect
from tests.event_stream_contract import token as _token
from tests.integration.conftest import metric_sample as _metric

pytestmark = pytest.mark.integration


async def _served(events: AsyncIterator[StreamEvent]) -> list[int]:
    return [event.seq async for event in events]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ThrowawayRedis:
    """A redis-server of this test's own, on a free port, that the test can stop and start."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed"
    server = ThrowawayRedis(binary)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def test_dragonfly_down_keeps_events_logs_once_and_delivers_them_when_back(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics,
        caplog: pytest.LogCaptureFixture) -> None:
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics)
    probe = DragonflyReadinessProbe(events)
    try:
        writer = await events.writer("job-down", "trace", run=1)
        await writer.emit(LLM_STREAM, _token(0))
        async with asyncio.timeout(5):
            while writer.published < 1:
                await asyncio.sleep(0.01)
        assert (await probe.check()).ok

        await server.kill()
        caplog.set_level(logging.WARNING, logger="agent_executor.adapters.dragonfly.writer")
        for i in range(1, 200):
            await writer.emit(LLM_STREAM, _token(i))
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(10):
            while writer.retries < 2:  # tried, failed, kept
                await asyncio.sleep(0.01)
        down = await probe.check()
        assert not down.ok and down.detail
        assert await _collect(events.follow("job-down")) == []  # ends, does not hang
        with pytest.raises(DependencyUnavailable):
            await events.subscribe("job-down")  # a follower that cannot be served is told
        with pytest.raises(DependencyUnavailable):
            await events.has_end("job-down", 1)

        await server.start()  # an empty server: the counter is gone, seq must not go back
        await writer.emit(LLM_STREAM, _token(200))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()  # never raises
        async with asyncio.timeout(10):
            while not await events.has_end("job-down", 1):
                await asyncio.sleep(0.05)

        assert (writer.published, writer.lost) == (202, 0)
        assert _metric(metrics, "stream_publish_errors_total") == 0
        warnings = [r for r in caplog.records if r.name.endswith("dragonfly.writer")]
        assert len(warnings) == 1 and "Dragonfly unavailable" in warnings[0].getMessage()
        assert getattr(warnings[0], "job_id", None) == "job-down"
        replayed = await _collect(events.follow("job-down"))
        assert [e.seq for e in replayed] == list(range(2, 203))
        assert [e.data.get("content") for e in replayed[:2]] == ["t1 ", "t2 "]
        assert (await probe.check()).ok
    finally:
        await events.aclose()


class PausingRuntime:
    """Streams three tokens, waits for `gate`, streams three more, then answers."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.paused = asyncio.Event()

    async def usage(self, job: Job) -> Usage:
        return Usage()

    async def run(self, job: Job, emit: EventSink, resume: object = None) -> AgentOutput:
        for i in range(3):
            await emit(LLM_STREAM, _token(i))
        self.paused.set()
        await self.gate.wait()
        for i in range(3, 6):
            await emit(LLM_STREAM, _token(i))
        return AgentOutput("done")


class ListPublisher:
    def __init__(self) -> None:
        self.published: list[JobResult] = []

    async def publish(self, result: JobResult) -> None:
        self.published.append(result)


async def test_a_job_completes_when_dragonfly_dies_mid_job_and_its_end_arrives_after(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics, tmp_path: Path) -> None:
    """The job does not wait for Dragonfly; its last events, `end` among them, are kept
    and reach the replay buffer once Dragonfly is back (before: dropped, no `end`)."""
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics)
    ledger = await SqliteJobLedger.create(tmp_path / "ledger.sqlite3")
    runtime, publisher = PausingRuntime(), ListPublisher()
    execute = ExecuteJob(ledger, runtime, events, publisher, metrics, owner="test",
                         max_concurrent=1, job_timeout_seconds=30)
    job = Job("job-mid", "trace", {"name": "a"}, {"messages": [{"role": "user", "content": "x"}]})
    probe = Redis(host="127.0.0.1", port=server.port)
    try:
        running = asyncio.create_task(execute.execute(job, "http"))
        await asyncio.wait_for(runtime.paused.wait(), 10)
        async with asyncio.timeout(10):
            while await probe.llen(events.keys("job-mid").replay) < 3:  # type: ignore[misc]
                await asyncio.sleep(0.01)
        await server.kill()
        runtime.gate.set()
        started = time.monotonic()
        result = await asyncio.wait_for(running, 20)
        assert time.monotonic() - started < 5, "the job waited for Dragonfly"

        assert result.status == "completed"
        assert publisher.published == [result]
        assert _metric(metrics, "jobs_total", status="completed", source="http") == 1
        assert not await _collect(events.follow("job-mid", live=False))

        await server.start()  # empty: what was sent before the outage is gone
        async with asyncio.timeout(15):
            while not await events.has_end("job-mid", 1):
                await asyncio.sleep(0.05)
        replayed = await _collect(events.follow("job-mid"))
        assert [(e.seq, e.event_type) for e in replayed] == [
            (4, LLM_STREAM), (5, LLM_STREAM), (6, LLM_STREAM), (7, END)]
        assert replayed[-1].data["status"] == "completed"
        assert _metric(metrics, "stream_publish_errors_total") == 0
    finally:
        await probe.aclose()
        await events.aclose()
        await ledger.aclose()


def _settings(port: int) -> DragonflySettings:
    return DragonflySettings(host="127.0.0.1", port=port, password=None, db=0)




async def test_followers_ride_out_a_dragonfly_restart_and_repair_from_the_buffer(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics) -> None:
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics,
                                                reconnect_grace_seconds=20)
    try:
        writer = await events.writer("job-r", "trace", run=1)
        await writer.emit(LLM_STREAM, _token(0))
        followers = [await events.subscribe("job-r") for _ in range(20)]
        served = [asyncio.create_task(_served(f)) for f in followers]
        async with asyncio.timeout(5):
            while writer.published < 1:
                await asyncio.sleep(0.01)
        await server.kill()
        async with asyncio.timeout(10):
            while events.fanout.connected:
                await asyncio.sleep(0.01)
        await writer.emit(LLM_STREAM, _token(1))
        await server.start()
        await writer.emit(END, {"status": "completed"})  # may reach the buffer before
        await writer.aclose()                            # the followers resubscribe
        results = await asyncio.wait_for(asyncio.gather(*served), 20)
        assert events.fanout.reconnects >= 1
        # The restarted server is empty: seq 1 went with it; 2 and 3 come from the buffer.
        assert all(seqs == [1, 2, 3] for seqs in results), results
    finally:
        await events.aclose()


async def test_a_follower_is_told_when_dragonfly_stays_away_or_it_falls_behind(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics) -> None:
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics,
                                                reconnect_grace_seconds=0.5, follower_queue=5)
    try:
        slow = await events.subscribe("job-s")
        writer = await events.writer("job-s", "trace", run=1)
        for i in range(50):
            await writer.emit(LLM_STREAM, _token(i))
        await writer.aclose()
        with pytest.raises(DependencyUnavailable, match="behind"):
            await _collect(slow)  # never read while 50 events came: its queue overflowed

        waiting = await events.subscribe("job-s", after_seq=50)
        task = asyncio.create_task(_collect(waiting))
        await server.kill()
        with pytest.raises(DependencyUnavailable, match="lost"):
            await asyncio.wait_for(task, 10)
    finally:
        await events.aclose()


async def test_jobs_that_end_during_an_outage_have_their_end_once_dragonfly_is_back(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics) -> None:
    """Before: of the jobs that ended during a 2 s outage (restarted empty), 227 of
    243 had no `end` in their replay buffer (the batch holding it was dropped)."""
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics)
    ended_at: dict[str, float] = {}
    rng = random.Random(7)

    async def job(job_id: str, start_after: float) -> None:
        await asyncio.sleep(start_after)
        writer = await events.writer(job_id, "trace", run=1)
        for i in range(20):
            await writer.emit(LLM_STREAM, _token(i))
            await asyncio.sleep(0.02)
        await writer.emit(END, {"status": "completed"})
        ended_at[job_id] = time.monotonic()
        await writer.aclose()

    try:
        jobs = {f"job-{i}": rng.random() * 2 for i in range(120)}
        running = [asyncio.create_task(job(j, delay)) for j, delay in jobs.items()]
        await asyncio.sleep(1.0)
        await server.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(1.5)  # the outage: jobs go on and end meanwhile
        await server.start()
        await asyncio.wait_for(asyncio.gather(*running), 30)

        during = [j for j in jobs if ended_at[j] > killed_at]
        assert len(during) > 30, "too few jobs ended during the outage to prove anything"
        deadline = time.monotonic() + 15
        while missing := [j for j in during if not await events.has_end(j, 1)]:
            assert time.monotonic() < deadline, f"{len(missing)} of {len(during)} lack `end`"
            await asyncio.sleep(0.1)
        for job_id in during:
            replayed = await _collect(events.follow(job_id, live=False))
            assert replayed[-1].event_type == END
            seqs = [e.seq for e in replayed]
            assert seqs == list(range(seqs[0], seqs[-1] + 1))  # gapless from the restart
        print(f"\n{len(during)} jobs ended during the outage, all with their `end`")
    finally:
        await events.aclose()
