"""Cancelling a job: pending, running here, running on another replica, finished."""

from __future__ import annotations

import asyncio

import pytest

from agent_executor.adapters.embedded.cancel_broadcast import InProcessCancelBroadcast
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import JobFinished, JobNotFound
from agent_executor.domain.events import END
from agent_executor.domain.execute import ExecuteJob
from tests.unit.conftest import World, make_job


def replica(world: World, owner: str, broadcast: InProcessCancelBroadcast,
            lease_seconds: float = 30.0) -> ExecuteJob:
    return ExecuteJob(world.ledger, world.runtime, world.events, world.publisher,
                      world.metrics, owner=owner, max_concurrent=2, job_timeout_seconds=30,
                      lease_seconds=lease_seconds, broadcast=broadcast)


async def test_a_running_job_cancelled_from_another_replica_stops_and_ends_cancelled() -> None:
    world = World()
    broadcast = InProcessCancelBroadcast()
    runner, other = replica(world, "a", broadcast), replica(world, "b", broadcast)
    listening = asyncio.create_task(runner.listen_for_cancels())
    world.runtime.gate = asyncio.Event()  # the run would wait for ever
    run = asyncio.create_task(runner.execute(make_job(), "nats"))
    await world.runtime.started.wait()

    record = await other.cancel("job-1", "the user changed their mind")
    assert record.status == "running" and record.result is None
    result = await asyncio.wait_for(run, 5)
    listening.cancel()

    assert (result.status, result.reason) == ("cancelled", "the user changed their mind")
    assert result.event_id == "job-1:cancelled"
    assert [r.status for r in world.publisher.published] == ["cancelled"]
    events = world.events.events["job-1"]
    assert events[-1].event_type == END and events[-1].data["status"] == "cancelled"
    assert [e.event_type for e in events].count(END) == 1
    assert world.ledger.records["job-1"].status == "cancelled"
    with pytest.raises(JobFinished):
        await other.cancel("job-1", "again")


async def test_a_missed_broadcast_is_caught_at_the_next_lease_renewal() -> None:
    world = World()
    silent = InProcessCancelBroadcast()  # nobody listens: the announcement is lost
    runner = replica(world, "a", InProcessCancelBroadcast(), lease_seconds=0.15)
    world.runtime.gate = asyncio.Event()
    run = asyncio.create_task(runner.execute(make_job(), "http"))
    await world.runtime.started.wait()
    await replica(world, "b", silent).cancel("job-1", "stop")
    result = await asyncio.wait_for(run, 5)
    assert result.status == "cancelled" and world.runtime.calls == ["job-1"]


async def test_a_pending_job_is_cancelled_at_once_and_never_starts(world: World) -> None:
    job = make_job()
    await world.execute.claim(job, "http")
    world.ledger.expire("job-1")  # its worker died before running it
    record = await world.execute.cancel("job-1", "not needed")
    assert record.status == "cancelled" and record.result is not None
    assert [r.status for r in world.publisher.published] == ["cancelled"]
    assert world.events.events["job-1"][-1].data["status"] == "cancelled"
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 0
    assert (await world.execute.execute(job, "nats")).status == "cancelled"
    assert world.runtime.calls == []


async def test_a_job_waiting_for_a_slot_is_cancelled_without_starting() -> None:
    world = World(max_concurrent=1)
    world.runtime.gate = asyncio.Event()
    first = asyncio.create_task(world.execute.execute(make_job("first"), "http"))
    await world.runtime.started.wait()
    waiting = asyncio.create_task(world.execute.execute(make_job("second"), "http"))
    while world.execute.capacity.waiting == 0:
        await asyncio.sleep(0.001)
    await world.execute.cancel("second", "too late")
    result = await asyncio.wait_for(waiting, 5)
    assert result.status == "cancelled" and world.runtime.calls == ["first"]
    world.runtime.gate.set()
    assert (await first).status == "completed"
    assert world.execute.free_slots == 1


async def test_cancel_of_unknown_and_finished_jobs(world: World) -> None:
    with pytest.raises(JobNotFound):
        await world.execute.cancel("nope", "x")
    await world.execute.execute(make_job(), "http")
    with pytest.raises(JobFinished):
        await world.execute.cancel("job-1", "x")


async def test_a_cancel_that_arrives_before_its_job_is_kept(world: World) -> None:
    await world.execute.cancel("early", "cancelled before it was sent", keep_unknown=True)
    result = await world.execute.execute(make_job("early"), "nats")
    assert (result.status, result.reason) == ("cancelled", "cancelled before it was sent")
    assert world.runtime.calls == []
    assert {r.event_id for r in world.publisher.published} == {"early:cancelled"}
