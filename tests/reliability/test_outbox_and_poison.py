"""One result per job, always, where the first round lost it:

- HTTP `202` jobs under SIGKILLs: a process that dies between recording a result and
  publishing it leaves the result in the ledger only (HTTP jobs are never
  redelivered); the outbox makes a live worker publish it.
- A poison job that SIGKILLs its worker every time it runs: it ends `failed` with
  `AttemptsExhausted` after MAX_JOB_ATTEMPTS, one result, and the fleet lives on.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx

from tests.integration.service import wait_for
from tests.reliability.harness import (
    Observer,
    Stack,
    check_exactly_once,
    check_streams_gapless,
    scripted_job,
)

HTTP_JOBS = 200
DELAY_MS = 60
KILL_EVERY = HTTP_JOBS // 6  # finished jobs between two kills
MIN_KILLS = 3
MAX_ATTEMPTS = 3
CE_HEADERS = {"ce-specversion": "1.0", "ce-source": "/reliability",
              "ce-type": "dev.my-platform.agent.execute", "content-type": "application/json",
              "prefer": "respond-async"}


async def _post_somewhere(stack: Stack, client: httpx.AsyncClient, index: int,
                          data: dict[str, Any]) -> None:
    """POST with `Prefer: respond-async` to a live worker; a producer retries another
    worker when the one it chose is down (or answers 5xx), until one says 202."""
    async def accepted() -> bool:
        for offset in range(len(stack.workers)):
            worker = stack.workers[(index + offset) % len(stack.workers)]
            try:
                answer = await client.post(f"{worker.url}/", content=json.dumps(data),
                                           headers={**CE_HEADERS, "ce-id": data["job_id"]},
                                           timeout=10)
            except httpx.TransportError:
                continue
            if answer.status_code in (200, 202, 409):  # 409: a retry found it running
                return True
        return False
    await wait_for(accepted, 60, f"a worker to accept {data['job_id']}", interval=0.2)


async def test_every_recorded_http_result_reaches_the_status_subject(stack: Stack) -> None:
    await stack.start_workers(2)
    jobs = [scripted_job(DELAY_MS) for _ in range(HTTP_JOBS)]
    async with Observer(stack) as observer, httpx.AsyncClient() as client:
        async def post_all() -> None:
            for i, data in enumerate(jobs):
                await _post_somewhere(stack, client, i, data)

        async def kill_while_running() -> None:
            victim, next_kill = 0, KILL_EVERY
            while (finished := await observer.finished_jobs()) < len(jobs):
                if finished >= next_kill:
                    await stack.kill_and_restart(victim)
                    victim, next_kill = 1 - victim, finished + KILL_EVERY
                await asyncio.sleep(0.1)  # polling progress

        poster = asyncio.create_task(post_all())
        killer = asyncio.create_task(kill_while_running())
        try:
            await wait_for(lambda: poster.done(), 180, "every job accepted", interval=0.2)
            poster.result()
            await wait_for(lambda: _all_published(observer, len(jobs)), 180,
                           "every job's one result on the status subject", interval=0.5)
        finally:
            killer.cancel()
            poster.cancel()
            await asyncio.gather(killer, poster, return_exceptions=True)
        results = await observer.results()
        rows = await stack.ledger_rows("SELECT job_id, status, published_at FROM job_ledger")

    assert stack.kills >= MIN_KILLS, f"only {stack.kills} kill(s) during the load"
    recorded = {r["job_id"] for r in rows if r["status"] == "completed"}
    published = {r.data["job_id"] for r in results}
    assert recorded == {j["job_id"] for j in jobs}
    assert recorded - published == set(), "recorded results never published"
    unmarked = [r["job_id"] for r in rows if r["published_at"] is None]
    assert unmarked == [], f"{len(unmarked)} result(s) not marked published"
    check_exactly_once(jobs, results)
    await check_streams_gapless(observer, jobs)
    print(f"{stack.kills} kills, {len(results)} results, 0 recorded-but-unpublished")


async def _all_published(observer: Observer, count: int) -> bool:
    return await observer.finished_jobs() >= count


def _poison_job() -> dict[str, Any]:
    data = scripted_job(0)
    config = data["agent_definition"]["nodes"][0]["config"]
    config["tools"] = ["crash_worker"]
    config["model"]["responses"] = [
        {"content": "Crashing.", "tool_calls": [{"name": "crash_worker", "args": {}}]}]
    return data


async def test_a_job_that_kills_its_worker_every_time_fails_after_max_attempts(
        stack: Stack) -> None:
    stack.extra_env.update({"AGENT_EXECUTOR_EXAMPLE_CRASH_TOOL": "1",
                            "MAX_JOB_ATTEMPTS": str(MAX_ATTEMPTS)})
    await stack.start_workers(2)
    poison, healthy = _poison_job(), scripted_job(0)
    deaths = Counter[int]()
    async with Observer(stack) as observer:
        async def restart_the_dead() -> None:  # what a Deployment does
            while True:
                for i, worker in enumerate(stack.workers):
                    if worker.proc is not None and worker.proc.poll() is not None:
                        deaths[i] += 1
                        await stack.start_worker(i)
                await asyncio.sleep(0.1)  # polling process state

        supervisor = asyncio.create_task(restart_the_dead())
        try:
            await observer.publish([poison])
            await wait_for(lambda: _result_of(observer, poison["job_id"]), 150,
                           "the poison job's result", interval=0.25)
            await observer.publish([healthy])
            await wait_for(lambda: _result_of(observer, healthy["job_id"]), 60,
                           "a healthy job's result after the poison job", interval=0.25)
            await wait_for(observer.settled, 30, "a settled consumer")
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        results = await observer.results()

    ours = [r for r in results if r.data["job_id"] == poison["job_id"]]
    assert len(ours) == 1, [r.msg_id for r in ours]
    assert ours[0].msg_id == f"{poison['job_id']}:failed"
    error = ours[0].data["error"]
    assert (error["type"], error["retryable"]) == ("AttemptsExhausted", False)
    assert sum(deaths.values()) == MAX_ATTEMPTS, dict(deaths)
    assert all(w.proc is not None and w.proc.poll() is None for w in stack.workers)
    check_exactly_once([healthy], [r for r in results if r.data["job_id"] == healthy["job_id"]])
    print(f"poison job: {sum(deaths.values())} worker deaths, then {error['message']}")


async def _result_of(observer: Observer, job_id: str) -> bool:
    try:
        return any(r.data["job_id"] == job_id for r in await observer.results())
    except Exception:  # NATS busy: ask again
        return False


