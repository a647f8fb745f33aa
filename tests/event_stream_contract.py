"""The behaviour every `EventStream` implementation shares (ports/events.py).

Subclass `EventStreamContract` in a `Test*` class and provide an async fixture
`stream` yielding a fresh stream. Writers may buffer: a test closes the writer
(which flushes) or waits, bounded, until the events can be read back; no test
sleeps for a fixed time. A fake that passes these is a fake that does not lie
(one `end` per run, a finished run's writers refused, `seq` gapless over runs,
followers stop at their run's `end`, `live=False` never waits).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agent_executor.domain.events import END, INTERRUPT, LLM_STREAM, STATE_UPDATE, StreamEvent
from agent_executor.ports.events import EventStream

DEADLINE_SECONDS = 10.0


def token(i: int) -> dict[str, str]:
    return {"agent": "Orchestrator", "content": f"t{i} "}


def new_job() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


async def collect(events: AsyncIterator[StreamEvent],
                  timeout: float = DEADLINE_SECONDS) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [event async for event in events]
    return await asyncio.wait_for(run(), timeout)


async def buffered(stream: EventStream, job_id: str, count: int,
                   until_run: int = 1) -> list[StreamEvent]:
    """The replay buffer (through run `until_run`) once it holds at least `count` events
    (bounded wait)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        events = await collect(stream.follow(job_id, live=False, until_run=until_run))
        if len(events) >= count:
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"{count} events not readable within {DEADLINE_SECONDS}s: {events}")
        await asyncio.sleep(0.01)


class EventStreamContract:
    """Tests every event stream must pass; subclasses provide the `stream` fixture."""

    async def test_seq_is_1_to_n_and_events_keep_their_fields(self, stream: EventStream) -> None:
        job_id = new_job()
        writer = await stream.writer(job_id, "trace-1", run=1)
        for i in range(5):
            await writer.emit(LLM_STREAM, token(i))
        await writer.emit(STATE_UPDATE, {"agent": "a", "node": "n", "update": {"k": [1, "x"]}})
        await writer.emit(END, {"status": "completed", "result": {"output": "done"}})
        await writer.aclose()
        events = await collect(stream.follow(job_id, live=False))
        assert [e.seq for e in events] == list(range(1, 8))
        assert [e.event_type for e in events] == [LLM_STREAM] * 5 + [STATE_UPDATE, END]
        assert {(e.job_id, e.trace_id) for e in events} == {(job_id, "trace-1")}
        assert events[0].data == token(0)
        assert events[5].data == {"agent": "a", "node": "n", "update": {"k": [1, "x"]}}
        assert events[-1].data == {"status": "completed", "result": {"output": "done"}}
        assert all(e.ts.endswith("Z") for e in events)

    async def test_seq_continues_across_writers(self, stream: EventStream) -> None:
        job_id = new_job()
        first = await stream.writer(job_id, "trace", run=1)
        for i in range(3):
            await first.emit(LLM_STREAM, token(i))
        await first.aclose()  # the attempt was interrupted; a resume writes on
        second = await stream.writer(job_id, "trace", run=1)
        await second.emit(LLM_STREAM, token(3))
        await second.emit(END, {"status": "completed"})
        await second.aclose()
        events = await collect(stream.follow(job_id, live=False))
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert [e.data.get("content") for e in events[:4]] == ["t0 ", "t1 ", "t2 ", "t3 "]

    async def test_follow_after_seq_resumes_after_it(self, stream: EventStream) -> None:
        job_id = new_job()
        writer = await stream.writer(job_id, "trace", run=1)
        for i in range(5):
            await writer.emit(LLM_STREAM, token(i))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        assert [e.seq for e in await collect(stream.follow(job_id, 3))] == [4, 5, 6]
        assert [e.seq for e in await collect(stream.follow(job_id, 6))] == []  # ends: past end
        strict = await stream.subscribe(job_id, 2, live=False)
        assert [e.seq for e in await collect(strict)] == [3, 4, 5, 6]

    async def test_events_after_end_are_refused_and_end_stays_last(
            self, stream: EventStream) -> None:
        job_id = new_job()
        writer = await stream.writer(job_id, "trace", run=1)
        await writer.emit(LLM_STREAM, token(0))
        assert not await _eventually_false_has_end(stream, job_id)
        await writer.emit(END, {"status": "completed"})
        await writer.emit(LLM_STREAM, token(1))  # too late
        await writer.aclose()
        repair = await stream.writer(job_id, "trace", run=1)  # a second `end` (an outbox repair)
        await repair.emit(END, {"status": "failed"})
        await repair.emit(LLM_STREAM, token(2))
        await repair.aclose()
        events = await collect(stream.follow(job_id, live=False))
        assert [(e.seq, e.event_type) for e in events] == [(1, LLM_STREAM), (2, END)]
        assert events[-1].data == {"status": "completed"}
        assert await stream.has_end(job_id, 1)

    async def test_live_false_returns_what_is_buffered_without_waiting(
            self, stream: EventStream) -> None:
        job_id = new_job()
        assert await collect(stream.follow(job_id, live=False)) == []
        writer = await stream.writer(job_id, "trace", run=1)
        for i in range(3):
            await writer.emit(LLM_STREAM, token(i))
        await buffered(stream, job_id, 3)
        events = await collect(stream.follow(job_id, live=False), timeout=2)  # no `end`
        assert [e.seq for e in events] == [1, 2, 3]
        await writer.aclose()

    async def test_follow_replays_then_goes_live_with_no_gap_or_repeat(
            self, stream: EventStream) -> None:
        job_id = new_job()
        writer = await stream.writer(job_id, "trace", run=1)
        early = asyncio.create_task(collect(await stream.subscribe(job_id)))  # before any event
        followers = [early]
        total = 120
        for i in range(total):
            await writer.emit(LLM_STREAM, token(i))
            if i % 17 == 0:  # join while events are being written
                followers.append(asyncio.create_task(collect(await stream.subscribe(job_id))))
                await asyncio.sleep(0)
        await buffered(stream, job_id, total)
        late = asyncio.create_task(collect(await stream.subscribe(job_id)))  # replay, then live
        resumed = asyncio.create_task(collect(await stream.subscribe(job_id, after_seq=100)))
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        for seen in await asyncio.gather(*followers, late):
            assert [e.seq for e in seen] == list(range(1, total + 2))
            assert seen[-1].event_type == END
        assert [e.seq for e in await resumed] == list(range(101, total + 2))

    async def test_end_ends_a_live_follow_and_it_waits_until_then(
            self, stream: EventStream) -> None:
        job_id = new_job()
        writer = await stream.writer(job_id, "trace", run=1)
        await writer.emit(LLM_STREAM, token(0))
        follower = asyncio.create_task(collect(stream.follow(job_id)))
        await buffered(stream, job_id, 1)
        await asyncio.sleep(0.05)  # give a wrong implementation the chance to end early
        assert not follower.done()  # no `end` yet: still live
        await writer.emit(END, {"status": "failed", "error": {"type": "ModelError"}})
        await writer.aclose()
        seen = await follower
        assert [(e.seq, e.event_type) for e in seen] == [(1, LLM_STREAM), (2, END)]

    async def test_has_end_tells_a_finished_stream(self, stream: EventStream) -> None:
        job_id = new_job()
        assert not await stream.has_end(job_id, 1)
        writer = await stream.writer(job_id, "trace", run=1)
        await writer.emit(END, {"status": "completed"})
        await writer.aclose()
        assert await stream.has_end(job_id, 1)
        assert not await stream.has_end(new_job(), 1)


    async def test_two_runs_each_end_and_seq_is_gapless_over_both(
            self, stream: EventStream) -> None:
        job_id = new_job()
        await write_run(stream, job_id, 1, tokens=2, status="failed")
        await write_run(stream, job_id, 2, tokens=3)  # a retry: its next run
        events = await collect(stream.follow(job_id, live=False, until_run=2))
        assert [e.seq for e in events] == list(range(1, 8))
        assert [(e.event_type, e.data.get("run")) for e in events] == [
            (LLM_STREAM, None)] * 2 + [(END, 1)] + [(LLM_STREAM, None)] * 3 + [(END, 2)]
        assert [e.data["status"] for e in events if e.event_type == END] == [
            "failed", "completed"]
        first_run = await collect(stream.follow(job_id, live=False))  # until_run=1
        assert [e.seq for e in first_run] == [1, 2, 3]
        assert [e.seq for e in await collect(stream.follow(job_id, 3, until_run=2))] == [
            4, 5, 6, 7]
        assert await collect(stream.follow(job_id, 7, until_run=2)) == []  # past its end

    async def test_a_repeated_end_of_a_run_is_refused_and_so_is_a_finished_runs_writer(
            self, stream: EventStream) -> None:
        job_id = new_job()
        await write_run(stream, job_id, 1, tokens=1, status="failed")
        repair = await stream.writer(job_id, "trace", run=1)  # the outbox repairing run 1
        await repair.emit(END, {"status": "completed", "run": 1})
        await repair.emit(LLM_STREAM, token(9))  # a stale writer of run 1: not run 2's
        await repair.aclose()
        await write_run(stream, job_id, 2, tokens=1)
        again = await stream.writer(job_id, "trace", run=2)
        await again.emit(END, {"status": "failed", "run": 2})
        await again.aclose()
        late = await stream.writer(job_id, "trace", run=1)
        await late.emit(LLM_STREAM, token(10))
        await late.aclose()
        events = await collect(stream.follow(job_id, live=False, until_run=2))
        assert [(e.seq, e.event_type, e.data.get("run")) for e in events] == [
            (1, LLM_STREAM, None), (2, END, 1), (3, LLM_STREAM, None), (4, END, 2)]
        assert [e.data["status"] for e in events if e.event_type == END] == [
            "failed", "completed"]

    async def test_followers_stop_at_the_end_of_the_run_they_follow(
            self, stream: EventStream) -> None:
        job_id = new_job()
        first = await stream.writer(job_id, "trace", run=1)
        await first.emit(LLM_STREAM, token(0))
        await buffered(stream, job_id, 1)
        of_run_1 = asyncio.create_task(collect(await stream.subscribe(job_id)))
        await first.emit(END, {"status": "failed", "run": 1})
        await first.aclose()
        assert [e.seq for e in await of_run_1] == [1, 2]  # run 1's end ends it
        assert await collect(await stream.subscribe(job_id, 2)) == []  # at once: past it
        # The job is retried: a follower of run 2 replays run 1, passes its end, waits.
        of_run_2 = asyncio.create_task(collect(await stream.subscribe(job_id, until_run=2)))
        resumed = asyncio.create_task(collect(await stream.subscribe(job_id, 2, until_run=2)))
        second = await stream.writer(job_id, "trace", run=2)
        await second.emit(LLM_STREAM, token(1))
        await buffered(stream, job_id, 3, until_run=2)
        await asyncio.sleep(0.05)  # give a wrong implementation the chance to end early
        assert not of_run_2.done() and not resumed.done()
        # of run 1, resuming past its end once run 2 goes on: the next `end` ends it
        stale = asyncio.create_task(collect(stream.follow(job_id, 2)))
        await second.emit(END, {"status": "completed", "run": 2})
        await second.aclose()
        seen = await of_run_2
        assert [(e.seq, e.event_type) for e in seen] == [
            (1, LLM_STREAM), (2, END), (3, LLM_STREAM), (4, END)]
        assert [e.seq for e in await resumed] == [3, 4]
        assert [e.seq for e in await stale] == [3, 4]
        assert [e.seq for e in await collect(stream.follow(job_id, until_run=2))] == [1, 2, 3, 4]

    async def test_an_interrupted_run_stays_open_until_it_resumes_and_ends(
            self, stream: EventStream) -> None:
        job_id = new_job()
        paused = await stream.writer(job_id, "trace", run=1)
        await paused.emit(LLM_STREAM, token(0))
        await paused.emit(INTERRUPT, {"agent": "a", "interrupt_id": "i-1", "requests": []})
        await paused.aclose()
        follower = asyncio.create_task(collect(await stream.subscribe(job_id)))
        await buffered(stream, job_id, 2)
        await asyncio.sleep(0.05)
        assert not follower.done()  # no `end`: an interrupt is no end
        resumed = await stream.writer(job_id, "trace", run=1)  # same run, same seq
        await resumed.emit(LLM_STREAM, token(1))
        await resumed.emit(END, {"status": "completed", "run": 1})
        await resumed.aclose()
        assert [(e.seq, e.event_type) for e in await follower] == [
            (1, LLM_STREAM), (2, INTERRUPT), (3, LLM_STREAM), (4, END)]

    async def test_has_end_tells_each_run(self, stream: EventStream) -> None:
        job_id = new_job()
        assert not await stream.has_end(job_id, 1)
        await write_run(stream, job_id, 1, tokens=1, status="cancelled")
        assert await stream.has_end(job_id, 1)
        assert not await stream.has_end(job_id, 2)
        second = await stream.writer(job_id, "trace", run=2)
        await second.emit(LLM_STREAM, token(1))
        await buffered(stream, job_id, 3, until_run=2)
        assert not await stream.has_end(job_id, 2)  # run 2 goes on
        await second.emit(END, {"status": "completed", "run": 2})
        await second.aclose()
        assert await stream.has_end(job_id, 2)
        assert await stream.has_end(job_id, 1)
        assert not await stream.has_end(job_id, 3)


async def write_run(stream: EventStream, job_id: str, run: int, *, tokens: int,
                    status: str = "completed") -> None:
    """One whole run: `tokens` token events, then the run's `end`."""
    writer = await stream.writer(job_id, "trace", run=run)
    for i in range(tokens):
        await writer.emit(LLM_STREAM, token(i))
    await writer.emit(END, {"status": status, "run": run})
    await writer.aclose()


async def _eventually_false_has_end(stream: EventStream, job_id: str) -> bool:
    await buffered(stream, job_id, 1)
    return await stream.has_end(job_id, 1)
