"""InProcessEventStream: the local profile's bus has the same semantics as Dragonfly's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from agent_executor.adapters.embedded.event_stream import (
    InProcessEventStream,
    InProcessReadinessProbe,
)
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.events import END, LLM_STREAM, STATE_UPDATE, StreamEvent
from agent_executor.domain.health import ProbeResult
from tests.event_stream_contract import EventStreamContract


class TestInProcessEventStream(EventStreamContract):
    @pytest.fixture
    async def stream(self) -> InProcessEventStream:
        return InProcessEventStream(PrometheusMetrics())


async def _collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [e async for e in events]
    return await asyncio.wait_for(run(), 5)


async def test_seq_is_gapless_across_writers_and_end_terminates_replay() -> None:
    stream = InProcessEventStream(PrometheusMetrics())
    first = await stream.writer("job-1", "trace", run=1)
    await first.emit(LLM_STREAM, {"agent": "a", "content": "x"})
    await first.aclose()
    second = await stream.writer("job-1", "trace", run=1)
    await second.emit(LLM_STREAM, {"agent": "a", "content": "y"})
    await second.emit(END, {"status": "completed"})
    events = await _collect(stream.follow("job-1", live=True))
    assert [(e.seq, e.event_type) for e in events] == [(1, LLM_STREAM), (2, LLM_STREAM),
                                                       (3, END)]
    assert [e.seq for e in await _collect(stream.follow("job-1", 2, live=False))] == [3]


async def test_a_job_s_stream_keeps_its_first_end_and_nothing_after_it() -> None:
    metrics = PrometheusMetrics()
    stream = InProcessEventStream(metrics)
    first = await stream.writer("job-1", "trace", run=1)
    await first.emit(LLM_STREAM, {"agent": "a", "content": "x"})
    await first.emit(END, {"status": "completed"})
    await first.emit(LLM_STREAM, {"agent": "a", "content": "late"})
    repair = await stream.writer("job-1", "trace", run=1)  # a redelivery repairing `end`
    await repair.emit(END, {"status": "failed"})
    events = await _collect(stream.follow("job-1", live=False))
    assert [(e.seq, e.event_type) for e in events] == [(1, LLM_STREAM), (2, END)]
    assert events[-1].data == {"status": "completed"}
    assert metrics.registry.get_sample_value(
        "agent_executor_stream_events_published_total", {"event_type": END}) == 1


async def test_live_followers_joining_at_any_point_see_each_event_once() -> None:
    stream = InProcessEventStream(PrometheusMetrics())
    writer = await stream.writer("job-2", "trace", run=1)
    followers = []
    for i in range(100):
        await writer.emit(LLM_STREAM, {"agent": "a", "content": str(i)})
        if i % 10 == 0:
            followers.append(asyncio.create_task(_collect(stream.follow("job-2"))))
            await asyncio.sleep(0)
    early = asyncio.create_task(_collect(stream.follow("job-3")))  # before its job starts
    await asyncio.sleep(0)
    await writer.emit(END, {"status": "completed"})
    other = await stream.writer("job-3", "trace", run=1)
    await other.emit(END, {"status": "failed"})
    for seen in await asyncio.gather(*followers):
        assert [e.seq for e in seen] == list(range(1, 102))
    assert [e.event_type for e in await early] == [END]


async def test_data_is_copied_as_json_values_and_metrics_count_by_type() -> None:
    metrics = PrometheusMetrics()
    stream = InProcessEventStream(metrics)
    writer = await stream.writer("job-4", "trace", run=1)
    update = {"agent": "a", "node": "n", "update": {"when": datetime(2026, 1, 1, tzinfo=UTC)}}
    await writer.emit(STATE_UPDATE, update)
    update["node"] = "changed later"
    [event] = await _collect(stream.follow("job-4", live=False))
    assert event.data == {"agent": "a", "node": "n",
                          "update": {"when": "2026-01-01 00:00:00+00:00"}}
    sample = metrics.registry.get_sample_value(
        "agent_executor_stream_events_published_total", {"event_type": STATE_UPDATE})
    assert sample == 1


async def test_replay_buffer_is_bounded_and_expires() -> None:
    now = [0.0]
    stream = InProcessEventStream(PrometheusMetrics(), max_events_per_job=3,
                                  replay_ttl_seconds=100, clock=lambda: now[0])
    writer = await stream.writer("job-5", "trace", run=1)
    for i in range(5):
        await writer.emit(LLM_STREAM, {"agent": "a", "content": str(i)})
    assert [e.seq for e in await _collect(stream.follow("job-5", live=False))] == [3, 4, 5]
    now[0] = 500.0
    await stream.writer("job-6", "trace", run=1)  # any access sweeps expired jobs
    assert stream.jobs == 1
    assert await _collect(stream.follow("job-5", live=False)) == []


async def test_probe_is_embedded() -> None:
    probe = InProcessReadinessProbe()
    assert probe.name == "dragonfly"
    assert await probe.check() == ProbeResult(ok=True, embedded=True)
