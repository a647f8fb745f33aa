"""Backing services failing under load, two workers on one consumer: PostgreSQL
restarted, NATS restarted (nothing lost, nothing duplicated, streams gapless),
Dragonfly stopped and back (every job still completes, and ends its stream)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
from redis.exceptions import RedisError

from tests.integration.service import wait_for
from tests.reliability.harness import (
    Observer,
    Stack,
    check_exactly_once,
    check_streams_gapless,
    metric_value,
    scripted_job,
)

JOBS = 150
DELAY_MS = 40
POSTGRES_OUTAGE_SECONDS = 1.5  # how long a server stays down (pacing the fault)
# Longer than the result publisher's 5 s timeout: results finished meanwhile fail to
# publish (a live client may still send them after the reconnect; a killed one not).
NATS_OUTAGE_SECONDS = 6.0
DRAGONFLY_OUTAGE_SECONDS = 2.0


async def _start_load(stack: Stack, observer: Observer, count: int) -> list[dict[str, Any]]:
    """Two workers, `count` jobs published; returns once a fifth of them finished,
    so the fault lands in the middle of the load."""
    await stack.start_workers(2)
    jobs = [scripted_job(DELAY_MS) for _ in range(count)]
    await observer.publish(jobs)

    async def under_way() -> bool:
        return await observer.finished_jobs() >= count // 5
    await wait_for(under_way, 120, "a fifth of the jobs to finish", interval=0.1)
    assert await observer.finished_jobs() < count, "the load ended before the fault"
    return jobs


async def _sum_metric(stack: Stack, name: str) -> float:
    expositions = await asyncio.gather(*(stack.metrics(w) for w in stack.workers))
    return sum(metric_value(text, f"agent_executor_{name}") for text in expositions)


async def test_postgres_restart_mid_load_loses_and_duplicates_nothing(stack: Stack) -> None:
    async with Observer(stack) as observer:
        jobs = await _start_load(stack, observer, JOBS)
        await asyncio.to_thread(stack.postgres.stop, "fast")
        await asyncio.sleep(POSTGRES_OUTAGE_SECONDS)
        await asyncio.to_thread(stack.postgres.start)

        results = await observer.wait_all_done(len(jobs), timeout=180)
        failed = await _sum_metric(stack, "nats_messages_failed_total")
        print(f"{failed:g} message(s) failed during the restart; "
              f"{sum(r.data['attempts'] > 1 for r in results)} job(s) retried")
        assert failed > 0, "no job noticed the restart: the test proved nothing"
        check_exactly_once(jobs, results)
        await check_streams_gapless(observer, jobs)


async def test_nats_restart_mid_load_loses_and_duplicates_nothing(stack: Stack) -> None:
    """NATS goes away; one worker is SIGKILLed while it is gone, taking with it the
    results it finished but could not publish; NATS and the worker come back."""
    async with Observer(stack) as observer:
        jobs = await _start_load(stack, observer, JOBS)
        await asyncio.to_thread(stack.nats_server.stop)
        await asyncio.sleep(NATS_OUTAGE_SECONDS)
        stack.workers[0].kill()
        await asyncio.to_thread(stack.nats_server.start)
        await stack.start_worker(0)

        results = await observer.wait_all_done(len(jobs), timeout=180)
        assert "NATS reconnected" in stack.workers[1].logs()
        redelivered = await _sum_metric(stack, "nats_redeliveries_total")
        republished = sum(w.logs().count("publishing its recorded result again")
                          for w in stack.workers)
        print(f"{redelivered:g} redelivery(ies), {republished} result(s) published again")
        assert republished > 0, "no finished job lost its result: the test proved nothing"
        check_exactly_once(jobs, results)
        await check_streams_gapless(observer, jobs)


async def test_dragonfly_outage_mid_load_every_job_completes_and_ends_its_stream(
        stack: Stack) -> None:
    """Dragonfly stops mid-load and comes back empty (a new pod) once every job is done:
    every job completed meanwhile, and every job that ended during the outage has its
    `end`, last, in its replay buffer (writers keep what they could not send)."""
    async with Observer(stack) as observer:
        jobs = await _start_load(stack, observer, 100)
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(1.0)  # results stored from now on: their `end` came after
        finished_before = {r.data["job_id"] for r in await observer.results()}

        results = await observer.wait_all_done(len(jobs), timeout=180)
        check_exactly_once(jobs, results)
        during = [job["job_id"] for job in jobs if job["job_id"] not in finished_before]
        assert len(during) > 10, "too few jobs ended during the outage to prove anything"
        assert any("Dragonfly unavailable" in w.logs() for w in stack.workers)
        await asyncio.to_thread(stack.redis.start)

        async def without_end() -> list[str]:
            missing = []
            for job_id in during:
                try:
                    events = await observer.stream_events(job_id)
                except (RedisError, OSError):
                    return during  # the observer's client reconnecting
                if not events or max(events, key=lambda e: e["seq"])["event_type"] != "end":
                    missing.append(job_id)
            return missing

        try:
            await wait_for(lambda: _none(without_end()), 30, "every job's `end` after the outage",
                           interval=0.25)
        except AssertionError:
            missing = await without_end()
            raise AssertionError(f"{len(missing)} of {len(during)} job(s) that ended during "
                                 f"the outage have no `end`: {missing[:5]}") from None
        for job_id in during:
            seqs = sorted(e["seq"] for e in await observer.stream_events(job_id))
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), (job_id, seqs)
        print(f"{len(during)} job(s) ended during the outage, each with its `end`")


async def _none(missing: Awaitable[list[str]]) -> bool:
    return not await missing


async def test_after_a_dragonfly_outage_every_finished_job_can_be_followed_to_its_end(
        stack: Stack) -> None:
    """Dragonfly goes away mid-load and comes back (empty: no persistence here). No
    follower waits for ever: every finished job's SSE replay ends with `end`, and every
    job that finished while Dragonfly was away gets its `end` into the buffer."""
    async with Observer(stack) as observer:
        jobs = await _start_load(stack, observer, 100)
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(DRAGONFLY_OUTAGE_SECONDS)
        await asyncio.to_thread(stack.redis.start)
        results = await observer.wait_all_done(len(jobs), timeout=180)
        check_exactly_once(jobs, results)

        async def nothing_owed() -> bool:
            rows = await stack.ledger_rows("SELECT job_id, published_at FROM job_ledger")
            return all(r["published_at"] is not None for r in rows)
        await wait_for(nothing_owed, 60, "every result marked published", interval=0.25)

        without_end = []
        async with httpx.AsyncClient() as client:
            for i, job in enumerate(jobs):
                worker = stack.workers[i % len(stack.workers)]
                sse = await client.get(f"{worker.url}/jobs/{job['job_id']}/events", timeout=10)
                frames = [f for f in sse.text.split("\n\n") if f.startswith("id:")]
                if not frames or "event: end" not in frames[-1]:
                    without_end.append(job["job_id"])
        buffers_without_end = [
            job["job_id"] for job in jobs
            if (events := await observer.stream_events(job["job_id"]))
            and events[-1]["event_type"] != "end"]
        print(f"{len(without_end)} SSE replays and {len(buffers_without_end)} buffers "
              "without an end")
        assert any("Dragonfly unavailable" in w.logs() for w in stack.workers), \
            "no worker noticed the outage: the test proved nothing"
        assert without_end == [], without_end[:5]
        assert buffers_without_end == [], buffers_without_end[:5]

