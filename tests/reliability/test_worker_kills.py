"""Two workers on one durable consumer, one of them SIGKILLed every few seconds and
restarted, under a few hundred jobs (a fifth of them sent twice, as a retrying
producer would): nothing lost, nothing run or stored twice."""

from __future__ import annotations

import asyncio

from tests.reliability.harness import (
    Observer,
    Stack,
    check_exactly_once,
    check_streams_gapless,
    scripted_job,
)

JOBS = 300
DELAY_MS = 100  # per model turn: a job spans several hundred ms, so kills land mid-job
FIRST_KILL_AFTER = JOBS // 8  # finished jobs
KILL_EVERY = JOBS // 5  # finished jobs since the last kill
MIN_KILLS = 3
SENT_TWICE_EVERY = 5
PROGRESS_POLL_SECONDS = 0.1


async def _kill_while_running(stack: Stack, observer: Observer, total: int) -> None:
    """Alternate between the workers: SIGKILL one and restart it each time another
    fifth of the jobs has finished. Paced by progress, not by the clock, so the kills
    land during the load however fast the service gets (with a clock, a faster
    service finished all 300 jobs between two kills)."""
    victim = 0
    next_kill = FIRST_KILL_AFTER
    while (finished := await observer.finished_jobs()) < total:
        if finished < next_kill:
            await asyncio.sleep(PROGRESS_POLL_SECONDS)  # polling progress
            continue
        await stack.kill_and_restart(victim)
        victim = 1 - victim
        next_kill = finished + KILL_EVERY


async def test_sigkilled_workers_neither_lose_nor_duplicate_jobs(stack: Stack) -> None:
    await stack.start_workers(2)
    jobs = [scripted_job(DELAY_MS) for _ in range(JOBS)]
    async with Observer(stack) as observer:
        await observer.publish(jobs, twice_every=SENT_TWICE_EVERY)
        killer = asyncio.create_task(_kill_while_running(stack, observer, len(jobs)))
        try:
            results = await observer.wait_all_done(len(jobs), timeout=240)
        finally:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
        if killer.done() and not killer.cancelled() and killer.exception() is not None:
            raise AssertionError("the kill loop failed") from killer.exception()

        assert stack.kills >= MIN_KILLS, f"only {stack.kills} kill(s) happened during the load"
        resumed = [r for r in results if r.data["attempts"] > 1]
        assert resumed, "no job was interrupted by a kill: the test proved nothing"
        print(f"{stack.kills} kills, {len(resumed)} job(s) resumed")
        check_exactly_once(jobs, results)
        await check_streams_gapless(observer, jobs)
