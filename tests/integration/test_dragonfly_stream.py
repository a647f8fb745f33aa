"""DragonflyEventStream against a real Redis-protocol server (Dragonfly on 16380)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
import uuid
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
from agent_executor.ports.runtime import EventSink
from tests.event_stream_contract import EventStreamContract

pytestmark = pytest.mark.integration


def _metric(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"agent_executor_{name}", labels or None)
    return value or 0.0


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics()


@pytest.fixture
async def stream(dragonfly_port: int, key_prefix: str,
                 metrics: PrometheusMetrics) -> AsyncIterator[DragonflyEventStream]:
    async for events in _stream_on(dragonfly_port, key_prefix, metrics):
        yield events


async def _stream_on(dragonfly_port: int, key_prefix: str,
                     metrics: PrometheusMetrics) -> AsyncIterator[DragonflyEventStream]:
    client = Redis(host="127.0.0.1", port=dragonfly_port)
    events = DragonflyEventStream(client, metrics, prefix=f"{key_prefix}langgraph:stream:",
                                  replay_ttl_seconds=600)
    try:
        yield events
    finally:
        cleanup = Redis(host="127.0.0.1", port=dragonfly_port)
        keys = [k async for k in cleanup.scan_iter(match=f"{key_prefix}*")]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()
        await events.aclose()


async def _collect(events: AsyncIterator[StreamEvent], timeout: float = 10) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [event async for event in events]
    return await asyncio.wait_for(run(), timeout)


def _token(i: int) -> dict[str, str]:
    return {"agent": "Orchestrator", "content": f"t{i} "}


async def test_events_are_published_in_order_with_gapless_seq_and_contract_shape(
        stream: DragonflyEventStream, dragonfly_port: int, metrics: PrometheusMetrics) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    listener = Redis(host="127.0.0.1", port=dragonfly_port)
    pubsub = listener.pubsub()
    await pubsub.subscribe(stream.keys(job_id).channel)
    writer = await stream.writer(job_id, "trace-1")
    for i in range(5):
        await writer.emit(LLM_STREAM, _token(i))
    await writer.emit(END, {"status": "completed", "result": {"output": "done"}})
    await writer.aclose()

    received: list[dict[str, object]] = []
    async with asyncio.timeout(5):
        while len(received) < 6:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                received.append(json.loads(message["data"]))
    await pubsub.aclose()
    await listener.aclose()

    assert [m["seq"] for m in received] == [1, 2, 3, 4, 5, 6]
    assert list(received[0]) == ["event_type", "job_id", "trace_id", "seq", "ts", "data"]
    assert received[0]["data"] == {"agent": "Orchestrator", "content": "t0 "}
    assert str(received[0]["ts"]).endswith("Z")
    assert received[-1]["event_type"] == END
    replayed = await _collect(stream.follow(job_id, live=False))
    assert [e.to_data() for e in replayed] == received
    assert _metric(metrics, "stream_events_published_total", event_type=LLM_STREAM) == 5
    assert _metric(metrics, "stream_events_published_total", event_type=END) == 1


async def test_a_job_s_stream_gets_one_end_however_many_writers_send_one(
        stream: DragonflyEventStream, metrics: PrometheusMetrics) -> None:
    """Two deliveries of a finished job whose stream lacks `end` may both repair it at
    once; and a late writer may send `end` again. The stream keeps the first, and
    nothing after it."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    first = await stream.writer(job_id, "trace")
    await first.emit(LLM_STREAM, _token(0))
    await first.aclose()
    repairs = [await stream.writer(job_id, "trace") for _ in range(2)]
    for writer in repairs:  # both buffer `end` before either sends it
        await writer.emit(END, {"status": "completed"})
    await asyncio.gather(*(writer.aclose() for writer in repairs))
    late = await stream.writer(job_id, "trace")
    await late.emit(LLM_STREAM, _token(1))
    await late.emit(END, {"status": "failed"})
    await late.aclose()

    events = await _collect(stream.follow(job_id, live=False))
    assert [(e.seq, e.event_type) for e in events] == [(1, LLM_STREAM), (2, END)]
    assert events[-1].data == {"status": "completed"}
    assert sorted(w.published for w in [*repairs, late]) == [0, 0, 1]
    assert sum(w.lost for w in [first, *repairs, late]) == 0
    assert _metric(metrics, "stream_events_published_total", event_type=END) == 1


async def test_emitting_ten_thousand_tokens_does_not_wait_for_the_network(
        stream: DragonflyEventStream, metrics: PrometheusMetrics) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    writer = await stream.writer(job_id, "trace")
    started = time.perf_counter()
    for i in range(10_000):
        await writer.emit(LLM_STREAM, _token(i))
    emitted = time.perf_counter() - started
    await writer.emit(END, {"status": "completed"})
    await writer.aclose()
    flushed = time.perf_counter() - started

    print(f"\nemit: 10000 tokens in {emitted * 1000:.1f} ms "
          f"({10_000 / emitted:,.0f}/s); flushed to Dragonfly in {flushed * 1000:.1f} ms "
          f"({writer.batches} pipelined batches)")
    assert emitted < 1.0
    assert writer.published == 10_001 and writer.lost == 0
    assert writer.batches <= 10_001 / 500 + 1
    assert _metric(metrics, "stream_events_published_total", event_type=LLM_STREAM) == 10_000
    events = await _collect(stream.follow(job_id, live=False))
    assert [e.seq for e in events] == list(range(1, 10_002))


async def test_probe_pings(stream: DragonflyEventStream) -> None:
    result = await DragonflyReadinessProbe(stream).check()
    assert (result.ok, result.embedded) == (True, False)


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
        writer = await events.writer("job-down", "trace")
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
            await events.has_end("job-down")

        await server.start()  # an empty server: the counter is gone, seq must not go back
        await writer.emit(LLM_STREAM, _token(200))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()  # never raises
        async with asyncio.timeout(10):
            while not await events.has_end("job-down"):
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

    async def run(self, job: Job, emit: EventSink) -> AgentOutput:
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
            while not await events.has_end("job-mid"):
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


async def _served(events: AsyncIterator[StreamEvent]) -> list[int]:
    return [event.seq async for event in events]


async def test_a_thousand_followers_share_one_connection_and_all_get_every_event(
        dragonfly_port: int, key_prefix: str, metrics: PrometheusMetrics) -> None:
    """Before: one Pub/Sub connection per follower out of a pool of 100; of 300 (or
    1,000) followers 50 got the job's events, the rest an empty stream at once."""
    name = f"test-{key_prefix[:-1]}"
    client = Redis(host="127.0.0.1", port=dragonfly_port, client_name=name)
    stream = DragonflyEventStream(client, metrics, prefix=f"{key_prefix}langgraph:stream:",
                                  replay_ttl_seconds=600)
    admin = Redis(host="127.0.0.1", port=dragonfly_port)
    peak = 0

    async def sample_connections() -> None:
        nonlocal peak
        while True:
            clients = await admin.client_list()
            peak = max(peak, sum(1 for c in clients if c.get("name") == name))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_connections())
    try:
        started = time.perf_counter()
        writer = await stream.writer("job-many", "trace")
        for i in range(50):  # the first half is in the replay buffer before they join
            await writer.emit(LLM_STREAM, _token(i))
        followers = await asyncio.gather(*(stream.subscribe("job-many") for _ in range(1000)))
        joined = time.perf_counter() - started
        served = [asyncio.create_task(_served(f)) for f in followers]
        for i in range(50, 200):
            await writer.emit(LLM_STREAM, _token(i))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        results = await asyncio.wait_for(asyncio.gather(*served), 60)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.1)  # one more connection sample after the end
    finally:
        sampler.cancel()
        await admin.aclose()
        await stream.aclose()
    print(f"\n1000 followers: joined in {joined:.2f}s, all ended in {elapsed:.2f}s; "
          f"peak {peak} Redis connections")
    assert all(seqs == list(range(1, 202)) for seqs in results)
    assert peak <= 20, f"{peak} connections for 1000 followers"


async def test_followers_ride_out_a_dragonfly_restart_and_repair_from_the_buffer(
        throwaway_redis: ThrowawayRedis, metrics: PrometheusMetrics) -> None:
    server = throwaway_redis
    events = DragonflyEventStream.from_settings(_settings(server.port), metrics,
                                                reconnect_grace_seconds=20)
    try:
        writer = await events.writer("job-r", "trace")
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
        writer = await events.writer("job-s", "trace")
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


class TestDragonflyEventStream(EventStreamContract):
    @pytest.fixture
    async def stream(self, dragonfly_port: int, key_prefix: str,
                     metrics: PrometheusMetrics) -> AsyncIterator[DragonflyEventStream]:
        async for events in _stream_on(dragonfly_port, key_prefix, metrics):
            yield events
