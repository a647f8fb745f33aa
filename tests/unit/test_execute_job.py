from __future__ import annotations

import asyncio

import pytest

from agent_executor.domain.errors import (
    DependencyUnavailable,
    InvalidAgentDefinition,
    JobConflict,
)
from agent_executor.domain.events import END
from tests.unit.conftest import World, make_job
from tests.unit.fakes import FakeRuntime


async def test_completed_job_is_recorded_published_and_streamed(world: World) -> None:
    result = await world.execute.execute(make_job(), "http")

    assert result.status == "completed"
    assert result.output is not None and result.output.output == "Hello world"
    assert result.attempts == 1
    assert world.publisher.published == [result]
    record = world.ledger.records["job-1"]
    assert record.status == "completed" and record.result == result
    events = world.events.events["job-1"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event_type == END
    assert events[-1].data["status"] == "completed"
    assert world.metrics.finished == [("http", "completed")]


async def test_a_finished_job_is_not_run_again_and_its_result_is_republished(
        world: World) -> None:
    first = await world.execute.execute(make_job(), "http")
    again = await world.execute.execute(make_job(), "nats")

    assert again == first
    assert again.event_id == "job-1:completed"
    assert world.runtime.calls == ["job-1"]
    assert world.publisher.published == [first, first]
    assert world.ledger.records["job-1"].attempts == 1


async def test_job_failure_ends_the_job_failed_with_the_error_type() -> None:
    world = World(FakeRuntime(error=InvalidAgentDefinition("nodes: no Orchestrator node")))
    result = await world.execute.execute(make_job(), "http")

    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("InvalidAgentDefinition", False)
    assert "nodes" in result.error.message
    assert world.events.events["job-1"][-1].data["error"]["type"] == "InvalidAgentDefinition"


async def test_an_unexpected_exception_fails_the_job_as_agent_error() -> None:
    world = World(FakeRuntime(error=RuntimeError("boom")))
    result = await world.execute.execute(make_job(), "http")
    assert result.error is not None and result.error.type == "AgentError"
    assert "boom" in result.error.message


async def test_timeout_fails_the_job_with_job_timeout() -> None:
    runtime = FakeRuntime()
    runtime.gate = asyncio.Event()  # never set: the run hangs
    world = World(runtime, job_timeout_seconds=0.05)
    result = await world.execute.execute(make_job(), "http")
    assert result.error is not None and result.error.type == "JobTimeout"
    assert world.events.events["job-1"][-1].event_type == END


async def test_a_job_running_elsewhere_is_a_conflict(world: World) -> None:
    world.runtime.gate = asyncio.Event()
    running = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await world.runtime.started.wait()

    with pytest.raises(JobConflict):
        await world.execute.execute(make_job(), "nats")

    world.runtime.gate.set()
    assert (await running).status == "completed"
    assert world.runtime.calls == ["job-1"]


async def test_dependency_failure_leaves_the_job_unfinished_and_claimable() -> None:
    world = World()
    world.publisher.down = True
    with pytest.raises(DependencyUnavailable):
        await world.execute.execute(make_job(), "nats")
    # the result is recorded; the redelivery publishes it without running again
    world.publisher.down = False
    again = await world.execute.execute(make_job(), "nats")
    assert again.status == "completed"
    assert world.runtime.calls == ["job-1"]
    assert world.publisher.published == [again]


async def test_a_crashed_attempt_is_resumed_and_counted() -> None:
    world = World()
    world.runtime.gate = asyncio.Event()
    run = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await world.runtime.started.wait()
    run.cancel()  # the process "dies": the lease is released
    with pytest.raises(asyncio.CancelledError):
        await run
    world.runtime.gate.set()

    result = await world.execute.execute(make_job(), "http")
    assert result.status == "completed"
    assert result.attempts == 2
    seqs = [e.seq for e in world.events.events["job-1"]]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_concurrency_is_bounded_by_max_concurrent() -> None:
    world = World(max_concurrent=2)
    world.runtime.gate = asyncio.Event()
    tasks = [asyncio.create_task(world.execute.execute(make_job(f"j{i}"), "http"))
             for i in range(4)]
    async def two_running() -> None:
        while len(world.runtime.calls) < 2:
            await asyncio.sleep(0.001)
    await asyncio.wait_for(two_running(), 2)
    assert len(world.runtime.calls) == 2
    assert world.execute.free_slots == 0
    world.runtime.gate.set()
    results = await asyncio.gather(*tasks)
    assert {r.status for r in results} == {"completed"}
    assert world.execute.free_slots == 2


async def test_lease_is_renewed_while_the_job_runs() -> None:
    world = World(lease_seconds=0.06)
    world.runtime.gate = asyncio.Event()
    run = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await world.runtime.started.wait()
    first_expiry = world.ledger.leases["job-1"][1]

    async def renewed() -> None:
        while world.ledger.leases["job-1"][1] <= first_expiry:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(renewed(), 2)
    world.runtime.gate.set()
    assert (await run).status == "completed"


async def test_a_ledger_that_stops_answering_stops_the_run_before_the_lease_can_expire(
) -> None:
    world = World(lease_seconds=0.3)
    world.runtime.gate = asyncio.Event()  # the job would run forever
    hang = asyncio.Event()

    async def renew_hangs(job_id: str, owner: str, lease_seconds: float) -> None:
        await hang.wait()  # e.g. PostgreSQL restarting: no answer, no error
    world.ledger.renew = renew_hangs  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(DependencyUnavailable, match="lease could not be renewed"):
        await world.execute.execute(make_job(), "nats")
    assert loop.time() - started < 0.3  # stopped while the lease was still ours
    assert world.publisher.published == []
