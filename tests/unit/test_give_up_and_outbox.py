"""Giving up, bounded attempts and the result outbox: one result per job, always."""

from __future__ import annotations

import asyncio

import pytest

from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.capacity import Capacity
from agent_executor.domain.errors import DependencyUnavailable, JobConflict
from agent_executor.domain.events import END
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.result import ErrorInfo
from tests.unit.conftest import World, make_job

GAVE_UP = ErrorInfo("DependencyUnavailable", "gave up after 5 deliveries", retryable=True)


def statuses(world: World, job_id: str = "job-1") -> list[str]:
    return [r.status for r in world.publisher.published if r.job_id == job_id]


async def test_give_up_records_before_it_publishes_so_the_reaper_never_runs_the_job(
        world: World) -> None:
    job = make_job()
    await world.execute.claim(job, "nats")          # a delivery claimed it, then its
    world.ledger.expire("job-1")                    # worker died: an orphan
    result = await world.execute.give_up(job, "nats", GAVE_UP)

    assert (result.status, result.error) == ("failed", GAVE_UP)
    assert world.ledger.records["job-1"].result == result
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 0
    assert world.runtime.calls == []
    assert statuses(world) == ["failed"]
    assert world.events.events["job-1"][-1].event_type == END


async def test_give_up_while_the_ledger_is_down_publishes_nothing(world: World) -> None:
    job = make_job()
    await world.execute.claim(job, "nats")
    world.ledger.expire("job-1")
    world.ledger.down = True
    with pytest.raises(DependencyUnavailable):
        await world.execute.give_up(job, "nats", GAVE_UP)
    assert world.publisher.published == []
    world.ledger.down = False  # PostgreSQL is back: the reaper runs the job once
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 1
    await _until(lambda: world.publisher.published)
    assert statuses(world) == ["completed"]


async def test_give_up_of_a_finished_job_delivers_its_recorded_result(world: World) -> None:
    done = await world.execute.execute(make_job(), "nats")
    assert await world.execute.give_up(make_job(), "nats", GAVE_UP) == done
    assert statuses(world) == ["completed", "completed"]


async def test_give_up_of_a_job_running_elsewhere_is_a_conflict(world: World) -> None:
    world.runtime.gate = asyncio.Event()
    running = asyncio.create_task(world.execute.execute(make_job(), "nats"))
    await world.runtime.started.wait()
    with pytest.raises(JobConflict):
        await world.execute.give_up(make_job(), "nats", GAVE_UP)
    world.runtime.gate.set()
    await running
    assert statuses(world) == ["completed"]


async def test_give_up_of_a_job_never_recorded_records_it(world: World) -> None:
    result = await world.execute.give_up(make_job(), "nats", GAVE_UP)
    assert result.attempts == 0 and world.ledger.records["job-1"].result == result
    again = await world.execute.execute(make_job(), "nats")
    assert again == result and world.runtime.calls == []


async def test_a_claim_past_max_attempts_fails_the_job_without_running_it() -> None:
    world = World(max_attempts=2)
    job = make_job()
    for _ in range(2):  # two workers died mid-run
        await world.execute.claim(job, "nats")
        world.ledger.expire("job-1")
    record = await world.execute.claim(job, "nats")
    assert record.attempts == 3
    result = await world.execute.run_claimed(job, record)

    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("AttemptsExhausted", False)
    assert "MAX_JOB_ATTEMPTS (2)" in result.error.message and result.attempts == 2
    assert world.runtime.calls == []
    assert statuses(world) == ["failed"]
    assert world.events.events["job-1"][-1].data["error"]["type"] == "AttemptsExhausted"
    assert world.execute.free_slots == 2
    assert await world.execute.execute(job, "nats") == result  # and it stays so


async def test_a_result_whose_publish_was_lost_goes_out_from_the_outbox(world: World) -> None:
    world.publisher.down = True  # recorded, then the bus refused it (or the process died)
    with pytest.raises(DependencyUnavailable):
        await world.execute.execute(make_job(), "http")
    assert world.ledger.records["job-1"].status == "completed"
    world.publisher.down = False

    reaper = BackgroundJobs(world.execute, world.ledger, publish_after_seconds=0)
    await reaper.reap_once()
    assert statuses(world) == ["completed"]
    await reaper.reap_once()  # marked published: not again
    assert statuses(world) == ["completed"]


async def test_a_stream_down_at_the_end_gets_its_end_from_the_outbox(world: World) -> None:
    world.events.down = True  # Dragonfly lost while the job ends
    result = await world.execute.execute(make_job(), "http")
    assert "job-1" not in world.ledger.published
    world.events.down = False

    reaper = BackgroundJobs(world.execute, world.ledger, publish_after_seconds=0)
    await reaper.reap_once()
    events = world.events.events.get("job-1", [])
    assert [e.event_type for e in events][-1:] == [END]
    assert events[-1].data["status"] == result.status
    assert "job-1" in world.ledger.published
    await reaper.reap_once()
    assert [e.event_type for e in world.events.events["job-1"]].count(END) == 1


async def test_results_recorded_moments_ago_are_left_to_their_runner(world: World) -> None:
    world.publisher.down = True
    with pytest.raises(DependencyUnavailable):
        await world.execute.execute(make_job(), "http")
    world.publisher.down = False
    await BackgroundJobs(world.execute, world.ledger, publish_after_seconds=3600).reap_once()
    assert world.publisher.published == []


async def test_capacity_hands_freed_slots_to_waiters_first() -> None:
    capacity = Capacity(1)
    first = capacity.reserve()
    assert first is not None and capacity.reserve() is None
    waiter = asyncio.create_task(capacity.acquire())
    await _until(lambda: capacity.waiting == 1)
    assert capacity.free == 0
    first.release()
    first.release()  # twice is once
    second = await waiter
    assert capacity.taken == 1 and capacity.reserve() is None
    freed = asyncio.create_task(capacity.wait_free())
    await asyncio.sleep(0)
    assert not freed.done()
    second.release()
    await asyncio.wait_for(freed, 1)
    assert capacity.free == 1 and capacity.taken == 0


async def test_a_cancelled_waiter_gives_no_slot_away() -> None:
    capacity = Capacity(1)
    slot = capacity.reserve()
    assert slot is not None
    waiter = asyncio.create_task(capacity.acquire())
    await _until(lambda: capacity.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slot.release()
    assert capacity.free == 1


async def test_a_reserved_slot_is_used_and_given_back(world: World) -> None:
    execute: ExecuteJob = world.execute
    slot = execute.capacity.reserve()
    assert slot is not None and execute.free_slots == 1
    job = make_job()
    result = await execute.run_claimed(job, await execute.claim(job, "nats"), slot)
    assert result.status == "completed" and execute.free_slots == 2


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)
