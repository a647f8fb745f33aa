"""SqliteEventStream: the local profile's stream on disk (contract suite, then what a
file adds: restarts, a second process on the same file, pruning)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_executor.adapters.embedded.sqlite_event_stream import (
    SqliteEventStream,
    SqliteStreamReadinessProbe,
)
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.events import END, LLM_STREAM
from agent_executor.domain.health import ProbeResult
from tests.event_stream_contract import EventStreamContract, buffered, collect, token


class TestSqliteEventStream(EventStreamContract):
    @pytest.fixture
    async def stream(self, tmp_path: Path) -> AsyncIterator[SqliteEventStream]:
        stream = await SqliteEventStream.in_data_dir(tmp_path, PrometheusMetrics())
        yield stream
        await stream.aclose()


async def _open(path: Path, **options: float) -> SqliteEventStream:
    return await SqliteEventStream.in_data_dir(path, PrometheusMetrics(), **options)


async def test_seq_and_replay_survive_a_restart_and_last_event_id_resumes(
        tmp_path: Path) -> None:
    """Before: the local profile's stream was in memory; after a restart a client with
    `Last-Event-ID: 63` waited for ever and a finished job's replay was empty."""
    before = await _open(tmp_path)
    writer = await before.writer("job-1", "trace", run=1)
    for i in range(63):
        await writer.emit(LLM_STREAM, token(i))
    await writer.aclose()  # the process stops mid-job
    await before.aclose()

    after = await _open(tmp_path)  # a new process on the same data dir
    try:
        resumed = asyncio.create_task(collect(await after.subscribe("job-1", after_seq=63)))
        writer = await after.writer("job-1", "trace", run=1)  # the job resumes
        await writer.emit(LLM_STREAM, token(63))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        assert [e.seq for e in await resumed] == [64, 65]
        replay = await collect(after.follow("job-1"))
        assert [e.seq for e in replay] == list(range(1, 66)) and replay[-1].event_type == END
        assert await after.has_end("job-1", 1)
    finally:
        await after.aclose()


async def test_a_follower_sees_events_another_process_writes(tmp_path: Path) -> None:
    reader = await _open(tmp_path, poll_seconds=0.02)
    other = await _open(tmp_path)  # stands in for a second process: another connection
    try:
        follower = asyncio.create_task(collect(reader.follow("job-2")))
        writer = await other.writer("job-2", "trace", run=1)
        await writer.emit(LLM_STREAM, token(0))
        await writer.aclose()
        await buffered(reader, "job-2", 1)
        writer = await other.writer("job-2", "trace", run=1)
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        assert [e.seq for e in await follower] == [1, 2]
    finally:
        await reader.aclose()
        await other.aclose()


async def test_replay_keeps_the_newest_events_and_expires_idle_jobs(tmp_path: Path) -> None:
    now = [1000.0]
    stream = await SqliteEventStream.in_data_dir(tmp_path, PrometheusMetrics(),
                                                 max_events_per_job=3,
                                                 replay_ttl_seconds=100, clock=lambda: now[0])
    try:
        writer = await stream.writer("job-3", "trace", run=1)
        for i in range(5):
            await writer.emit(LLM_STREAM, token(i))
        await writer.aclose()
        assert [e.seq for e in await collect(stream.follow("job-3", live=False))] == [3, 4, 5]
        now[0] += 500
        await stream.writer("job-4", "trace", run=1)  # any new writer prunes, at most once a minute
        assert await collect(stream.follow("job-3", live=False)) == []
        writer = await stream.writer("job-3", "trace", run=1)  # expired: as Dragonfly's keys do
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        assert [e.seq for e in await collect(stream.follow("job-3", live=False))] == [1]
    finally:
        await stream.aclose()


async def test_probe_is_embedded_and_pings_the_file(tmp_path: Path) -> None:
    stream = await _open(tmp_path)
    probe = SqliteStreamReadinessProbe(stream)
    assert probe.name == "dragonfly"
    assert await probe.check() == ProbeResult(ok=True, embedded=True)
    await stream.aclose()
    assert not (await probe.check()).ok
