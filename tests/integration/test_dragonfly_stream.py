"""DragonflyEventStream against a real Redis-protocol server (Dragonfly on 16380)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_executor.adapters.dragonfly.event_stream import DragonflyEventStream
from agent_executor.adapters.dragonfly.probe import DragonflyReadinessProbe
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.events import END, LLM_STREAM, StreamEvent
from tests.event_stream_contract import EventStreamContract
from tests.integration.conftest import metric_sample as _metric

pytestmark = pytest.mark.integration


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
    writer = await stream.writer(job_id, "trace-1", run=1)
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
    first = await stream.writer(job_id, "trace", run=1)
    await first.emit(LLM_STREAM, _token(0))
    await first.aclose()
    repairs = [await stream.writer(job_id, "trace", run=1) for _ in range(2)]
    for writer in repairs:  # both buffer `end` before either sends it
        await writer.emit(END, {"status": "completed"})
    await asyncio.gather(*(writer.aclose() for writer in repairs))
    late = await stream.writer(job_id, "trace", run=1)
    await late.emit(LLM_STREAM, _token(1))
    await late.emit(END, {"status": "failed"})
    await late.aclose()

    events = await _collect(stream.follow(job_id, live=False))
    assert [(e.seq, e.event_type) for e in events] == [(1, LLM_STREAM), (2, END)]
    assert events[-1].data == {"status": "completed"}
    assert sorted(w.published for w in [*repairs, late]) == [0, 0, 1]
    assert sum(w.lost for w in [first, *repairs, late]) == 0
    assert _metric(metrics, "stream_events_published_total", event_type=END) == 1


async def test_a_retried_job_s_run_gets_one_end_however_many_writers_send_one(
        stream: DragonflyEventStream, dragonfly_port: int) -> None:
    """Run 2 of a retried job, repaired twice at once, ends once; the end marker holds
    the run of the latest `end` ("1" is what versions before runs wrote, so their
    streams read as run 1 ended)."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    first = await stream.writer(job_id, "trace", run=1)
    await first.emit(END, {"status": "failed", "run": 1})
    await first.aclose()
    client = Redis(host="127.0.0.1", port=dragonfly_port)
    try:
        assert await client.get(stream.keys(job_id).end) == b"1"
        second = await stream.writer(job_id, "trace", run=2)
        await second.emit(LLM_STREAM, _token(0))
        await second.aclose()
        repairs = [await stream.writer(job_id, "trace", run=2) for _ in range(2)]
        for writer in repairs:
            await writer.emit(END, {"status": "completed", "run": 2})
        await asyncio.gather(*(writer.aclose() for writer in repairs))
        assert await client.get(stream.keys(job_id).end) == b"2"
    finally:
        await client.aclose()
    events = await _collect(stream.follow(job_id, live=False, until_run=2))
    assert [(e.seq, e.event_type) for e in events] == [(1, END), (2, LLM_STREAM), (3, END)]
    assert sorted(w.published for w in repairs) == [0, 1]


async def test_a_writer_whose_numbers_went_stale_never_reuses_a_seq(
        stream: DragonflyEventStream) -> None:
    """A worker stopped mid-run (its lease lapsed while PostgreSQL restarted) may still
    send a batch after the worker that resumed the job sent its own: the late batch is
    renumbered after it, never given the same seqs (seen as 16, 16, 17, 17, ...)."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    stale = await stream.writer(job_id, "trace", run=1)
    await stale.emit(LLM_STREAM, _token(0))
    while stale.published < 1:  # the first batch is out: its next seq is cached (2)
        await asyncio.sleep(0.005)
    resumed = await stream.writer(job_id, "trace", run=1)
    for i in range(1, 4):
        await resumed.emit(LLM_STREAM, _token(i))
    await resumed.aclose()
    await stale.emit(LLM_STREAM, _token(9))
    await stale.aclose()
    seqs = [e.seq for e in await _collect(stream.follow(job_id, live=False))]
    assert seqs == [1, 2, 3, 4, 5]


async def test_emitting_ten_thousand_tokens_does_not_wait_for_the_network(
        stream: DragonflyEventStream, metrics: PrometheusMetrics) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    writer = await stream.writer(job_id, "trace", run=1)
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
        writer = await stream.writer("job-many", "trace", run=1)
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


async def test_a_follower_arriving_as_the_last_one_leaves_is_still_subscribed(
        stream: DragonflyEventStream, dragonfly_port: int) -> None:
    """The last follower of a channel to leave sends UNSUBSCRIBE; one arriving at that
    moment sends SUBSCRIBE. Whichever order they reach the server in, the newcomer
    must end up subscribed (and nothing stays subscribed once all have left)."""
    admin = Redis(host="127.0.0.1", port=dragonfly_port)
    try:
        for round_ in range(20):
            job_id = f"job-churn-{round_}"
            leaving = await stream.subscribe(job_id)
            await leaving.aclose()  # type: ignore[attr-defined]
            staying = asyncio.create_task(_collect(await stream.subscribe(job_id)))
            writer = await stream.writer(job_id, "trace", run=1)
            await writer.emit(LLM_STREAM, _token(0))
            await writer.aclose()
            channel = stream.keys(job_id).channel
            await asyncio.sleep(0.02)  # let a wrong UNSUBSCRIBE reach the server first
            writer = await stream.writer(job_id, "trace", run=1)
            await writer.emit(END, {"status": "completed"})
            await writer.aclose()
            assert [e.seq for e in await staying] == [1, 2], round_
        assert not stream.fanout.channels
        async with asyncio.timeout(5):
            while (await admin.pubsub_numsub(channel))[0][1]:  # type: ignore[no-untyped-call]
                await asyncio.sleep(0.01)
    finally:
        await admin.aclose()


class ApplyThenTimeOut:
    """The append script, except that its first call times out after Dragonfly applied
    it (the answer lost on the way back): the writer cannot tell it was applied."""

    def __init__(self, script: Any, applied: asyncio.Event) -> None:
        self.script = script
        self.applied = applied
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        result = await self.script(**kwargs)
        if self.calls == 1:
            self.applied.set()
            raise RedisTimeoutError("the answer was lost")
        return result


async def test_a_batch_applied_before_a_timeout_is_not_appended_twice_when_retried(
        stream: DragonflyEventStream, dragonfly_port: int, metrics: PrometheusMetrics) -> None:
    applied = asyncio.Event()
    writer = await stream.writer("job-retry", "trace", run=1)
    flaky = ApplyThenTimeOut(writer._append, applied)  # noqa: SLF001
    writer._append = flaky  # type: ignore[assignment]  # noqa: SLF001
    for i in range(3):
        await writer.emit(LLM_STREAM, _token(i))
    await asyncio.wait_for(applied.wait(), 5)
    for i in range(3, 6):  # more events while the first batch waits to be retried
        await writer.emit(LLM_STREAM, _token(i))
    await writer.emit(END, {"status": "completed"})
    await writer.aclose()
    async with asyncio.timeout(10):
        while not await stream.has_end("job-retry", 1):
            await asyncio.sleep(0.02)
    events = await _collect(stream.follow("job-retry", live=False))
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.data.get("content") for e in events[:6]] == [f"t{i} " for i in range(6)]
    assert flaky.calls >= 2 and writer.lost == 0


class TestDragonflyEventStream(EventStreamContract):
    @pytest.fixture
    async def stream(self, dragonfly_port: int, key_prefix: str,
                     metrics: PrometheusMetrics) -> AsyncIterator[DragonflyEventStream]:
        async for events in _stream_on(dragonfly_port, key_prefix, metrics):
            yield events
