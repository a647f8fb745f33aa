from __future__ import annotations

import asyncio

from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.execute import ExecuteJob
from tests.unit.conftest import World, make_job


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def test_a_started_job_runs_to_its_result(world: World) -> None:
    background = BackgroundJobs(world.execute, world.ledger)
    job = make_job()
    background.start(job, await world.execute.claim(job, "http"))
    await wait_until(lambda: world.publisher.published)
    assert world.ledger.records["job-1"].status == "completed"


async def test_an_orphan_whose_lease_expired_is_taken_over_by_another_worker() -> None:
    world = World()
    dead = ExecuteJob(world.ledger, world.runtime, world.events, world.publisher,
                      world.metrics, owner="dead-worker", max_concurrent=1,
                      job_timeout_seconds=30)
    await dead.claim(make_job(), "http")  # claimed, then the worker "died"
    reaper = BackgroundJobs(world.execute, world.ledger)

    assert await reaper.reap_once() == 0  # lease still live: not an orphan yet
    world.ledger.expire("job-1")
    assert await reaper.reap_once() == 1
    await wait_until(lambda: world.publisher.published)
    result = world.publisher.published[0]
    assert (result.status, result.attempts) == ("completed", 2)


async def test_nats_jobs_are_taken_over_too_and_cli_jobs_are_not() -> None:
    world = World()
    await world.execute.claim(make_job("from-nats"), "nats")
    await world.execute.claim(make_job("from-cli"), "cli")
    world.ledger.expire("from-nats")
    world.ledger.expire("from-cli")
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 1
    await wait_until(lambda: world.publisher.published)
    assert [r.job_id for r in world.publisher.published] == ["from-nats"]


async def test_drain_cancels_what_does_not_finish_and_gives_the_lease_back(
        world: World) -> None:
    world.runtime.gate = asyncio.Event()
    background = BackgroundJobs(world.execute, world.ledger)
    job = make_job()
    background.start(job, await world.execute.claim(job, "http"))
    await world.runtime.started.wait()
    await background.drain(0.01)
    assert background.running == 0
    assert "job-1" not in world.ledger.leases  # claimable at once by another replica
    assert world.ledger.records["job-1"].status == "running"
