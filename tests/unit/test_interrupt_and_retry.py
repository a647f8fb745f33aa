"""The use case's human in the loop and retry, on fakes: an interrupted job gives its
lease and slot back and publishes `interrupted:{n}`; a resume continues it on any
replica; a retry starts its next run (CONTRACT section 2a)."""

from __future__ import annotations

import asyncio

import pytest

from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import (
    InvalidRequest,
    JobNotFound,
    LeaseLost,
    ToolError,
    WrongJobState,
)
from agent_executor.domain.events import END, INTERRUPT
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.interrupts import Interrupt, ToolRequest
from tests.unit.conftest import World, make_job

PAUSE = Interrupt("int-1", "Orchestrator", (
    ToolRequest("write_file", "call-1", {"file_path": "/a.md", "content": "hi"},
                ("approve", "edit", "reject")),))
SECOND = Interrupt("int-2", "Orchestrator", (
    ToolRequest("edit_file", "call-2", {"file_path": "/a.md"}, ("approve", "reject")),))


def other_replica(world: World, owner: str = "replica-b") -> ExecuteJob:
    return ExecuteJob(world.ledger, world.runtime, world.events, world.publisher,
                      world.metrics, owner=owner, max_concurrent=2, job_timeout_seconds=30)


async def test_an_interrupted_job_waits_without_lease_or_slot(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    result = await world.execute.execute(make_job(), "nats")

    assert result.status == "interrupted" and result.event_id == "job-1:interrupted:1"
    assert result.interrupt == PAUSE.to_data()
    assert [r.event_id for r in world.publisher.published] == ["job-1:interrupted:1"]
    record = world.ledger.records["job-1"]
    assert record.status == "interrupted"
    with pytest.raises(LeaseLost):  # its lease was given back
        await world.ledger.renew("job-1", world.execute.owner, 30)
    assert world.execute.capacity.free == 2
    kinds = [e.event_type for e in world.events.events["job-1"]]
    assert kinds[-1] == INTERRUPT and END not in kinds
    assert world.metrics.interrupted == ["nats"]
    assert ("nats", "interrupted") in world.metrics.finished
    # a second delivery, or a reaper, does not run it: it waits for a decision
    again = await other_replica(world).execute(make_job(), "nats")
    assert again.event_id == "job-1:interrupted:1" and world.runtime.calls == ["job-1"]
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 0
    view = await world.ledger.get("job-1")
    assert view is not None and view.to_data()["interrupt"]["interrupt_id"] == "int-1"
    assert view.to_data()["finished_at"] is None


async def test_a_resume_continues_on_another_replica_and_completes_once(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    other = other_replica(world)
    record = await other.resume("job-1", "int-1", [{"type": "edit", "input": {"x": 1}}])
    assert record.status == "pending" and other.woken.is_set()

    background = BackgroundJobs(other, world.ledger)
    assert await background.reap_once() == 1
    await background.drain(5)
    resumed = world.runtime.resumes[-1]
    assert resumed is not None and resumed.interrupt_id == "int-1"
    assert resumed.decisions[0].input == {"x": 1}
    final = world.ledger.records["job-1"]
    assert final.status == "completed"
    assert [r.event_id for r in world.publisher.published] == [
        "job-1:interrupted:1", "job-1:completed"]
    events = world.events.events["job-1"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.event_type for e in events].count(END) == 1


async def test_a_second_interrupt_is_numbered_two(world: World) -> None:
    world.runtime.pauses = [PAUSE, SECOND]
    await world.execute.execute(make_job(), "http")
    await world.execute.resume("job-1", "int-1", [{"type": "approve"}])
    second = await world.execute.execute(make_job(), "http")
    assert second.event_id == "job-1:interrupted:2"
    assert second.interrupt is not None and second.interrupt["interrupt_id"] == "int-2"


@pytest.mark.parametrize(("interrupt_id", "decisions", "error", "match"), [
    ("int-0", [{"type": "approve"}], WrongJobState, "waits on interrupt int-1"),
    ("int-1", [], InvalidRequest, "0 given, 1 expected"),
    ("int-1", [{"type": "maybe"}], InvalidRequest, r"decisions\[0\]\.type"),
    ("int-1", [{"type": "edit"}], InvalidRequest, r"decisions\[0\]\.input"),
    ("int-1", "approve", InvalidRequest, "expected a list"),
    ("int-1", [{"type": "reject", "message": 7}], InvalidRequest, "message"),
])
async def test_a_wrong_resume_is_refused_and_changes_nothing(
        world: World, interrupt_id: str, decisions: object,
        error: type[Exception], match: str) -> None:
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    with pytest.raises(error, match=match):
        await world.execute.resume("job-1", interrupt_id, decisions)
    assert world.ledger.records["job-1"].status == "interrupted"


async def test_resume_of_a_job_that_is_not_interrupted(world: World) -> None:
    with pytest.raises(JobNotFound):
        await world.execute.resume("nope", "x", [])
    await world.execute.execute(make_job(), "http")
    with pytest.raises(WrongJobState, match="completed, not interrupted"):
        await world.execute.resume("job-1", "x", [{"type": "approve"}])


async def test_cancel_of_an_interrupted_job_ends_it_at_once(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    record = await world.execute.cancel("job-1", "no longer needed")
    assert record.status == "cancelled"
    assert [r.event_id for r in world.publisher.published] == [
        "job-1:interrupted:1", "job-1:cancelled"]
    assert world.events.events["job-1"][-1].event_type == END


async def test_a_failed_job_retried_completes_as_run_two(world: World) -> None:
    world.runtime.error = ToolError("the service was down")
    failed = await world.execute.execute(make_job(), "http")
    assert failed.status == "failed"
    world.runtime.error = None  # its cause fixed

    record = await world.execute.retry("job-1")
    assert (record.status, record.run) == ("pending", 2)
    assert world.execute.woken.is_set()
    again = await world.execute.execute(make_job(), "http")
    assert (again.status, again.run, again.event_id) == ("completed", 2, "job-1:completed:2")
    assert again.attempts == 2
    assert [r.event_id for r in world.publisher.published] == [
        "job-1:failed", "job-1:completed:2"]
    events = world.events.events["job-1"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.data["status"], e.data["run"]) for e in events if e.event_type == END] == [
        ("failed", 1), ("completed", 2)]
    with pytest.raises(WrongJobState):
        await world.execute.retry("job-1")


async def test_retry_refuses_what_is_not_failed_or_cancelled(world: World) -> None:
    with pytest.raises(JobNotFound):
        await world.execute.retry("nope")
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    with pytest.raises(WrongJobState):
        await world.execute.retry("job-1")


async def test_attempts_are_counted_per_run(world: World) -> None:
    world.execute.max_attempts = 2
    world.runtime.error = ToolError("down")
    job = make_job()
    await world.execute.claim(job, "http")
    world.ledger.expire("job-1")  # a worker died mid-run: attempt 1 lost
    result = await world.execute.execute(job, "http")
    assert (result.status, result.attempts) == ("failed", 2)
    world.runtime.error = None
    await world.execute.retry("job-1")
    again = await world.execute.execute(job, "http")
    assert (again.status, again.run, again.attempts) == ("completed", 2, 3)


async def test_waking_the_reaper_claims_a_resumed_job_at_once(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    background = BackgroundJobs(world.execute, world.ledger, reap_interval_seconds=3600)
    reaping = asyncio.create_task(background.reap_forever())
    try:
        for _ in range(3):  # let it reap once and wait (wherever it is, the wake holds)
            await asyncio.sleep(0)
        await world.execute.resume("job-1", "int-1", [{"type": "approve"}])
        async with asyncio.timeout(5):
            while world.ledger.records["job-1"].status != "completed":
                await asyncio.sleep(0.01)
    finally:
        reaping.cancel()
        await asyncio.gather(reaping, return_exceptions=True)


async def test_a_cancel_asked_for_as_the_run_pauses_is_not_lost(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    world.runtime.gate = asyncio.Event()
    run = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await world.runtime.started.wait()
    # the request is noted against the live lease, but this replica does not hear it
    await world.ledger.cancel("job-1", "too late to pause", keep_unknown=False)
    world.runtime.gate.set()
    result = await asyncio.wait_for(run, 5)
    assert (result.status, result.reason) == ("cancelled", "too late to pause")
    assert world.ledger.records["job-1"].status == "cancelled"
    assert world.publisher.published[-1].event_id == "job-1:cancelled"


async def test_cancelling_the_runner_stops_the_agent_before_the_lease_is_given_back(
        world: World) -> None:
    """A shutdown (drain) cancels the job's task: the agent's own run must stop too, or
    it would go on after another replica took the job over."""
    world.runtime.gate = asyncio.Event()  # the agent would wait for ever
    task = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await world.runtime.started.wait()
    agents = [t for t in asyncio.all_tasks() if t is not task
              and "FakeRuntime.run" in repr(t.get_coro())]
    assert len(agents) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agents[0].done(), "the agent kept running after its job was stopped"


async def test_a_retried_run_that_pauses_again_streams_its_interrupt(world: World) -> None:
    world.runtime.pauses = [PAUSE]
    await world.execute.execute(make_job(), "http")
    await world.execute.cancel("job-1", "not now")
    await world.execute.retry("job-1")
    again = await world.execute.execute(make_job(), "http")
    assert (again.status, again.run, again.event_id) == ("interrupted", 2,
                                                        "job-1:interrupted:2")
    events = world.events.events["job-1"]
    assert [(e.event_type, e.data.get("run")) for e in events
            if e.event_type in (INTERRUPT, END)] == [
        (INTERRUPT, None), (END, 1), (INTERRUPT, None)]
