"""Hostile input against a served production-profile worker, over HTTP and NATS at once
(issue 13): definitions built to exhaust it, unreadable envelopes (control characters,
NUL, lone surrogates, deep nesting, bad UTF-8, bad ce- headers), random methods and
paths, and a large result, while a normal job runs. No 5xx; every unreadable NATS
message terminated once; no job recorded for an unreadable envelope; RSS within 2x of
idle; /health p99 under 100 ms. Bounded: well under two minutes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.reliability.cloudevent_cases import bad_cases, unique_ids
from tests.reliability.harness import (
    Observer,
    Stack,
    metric_value,
    nats_settings,
    scripted_job,
    structured,
)
from tests.reliability.hostile_cases import draw, hostile_definitions, methods, paths

HOSTILE_DEFINITIONS = int(os.environ.get("HOSTILE_DEFINITIONS", "200"))
UNREADABLE = 150  # each sent over HTTP and over NATS
RANDOM_METHODS, RANDOM_PATHS = 300, 600
HTTP_CONCURRENCY = 6
HEALTH_P99_SECONDS = 0.100
RSS_FACTOR = 2.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Samples:
    health: list[float] = field(default_factory=list)
    health_errors: list[str] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


async def sample(url: str, pid: int, samples: Samples, stop: asyncio.Event) -> None:
    """/health every 25 ms (latency, status) and the worker's RSS every 100 ms."""
    async with httpx.AsyncClient(timeout=10) as client:
        tick = 0
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.get(f"{url}/health")
                samples.health.append(time.perf_counter() - started)
                if response.status_code != 200:
                    samples.health_errors.append(str(response.status_code))
            except httpx.HTTPError as exc:
                samples.health_errors.append(type(exc).__name__)
            if tick % 4 == 0:
                samples.rss.append(rss_mb(pid))
            tick += 1
            await asyncio.sleep(0.025)


def big_result_job() -> dict[str, Any]:
    """A normal job with a large result: a 200 KB file, written by a tool call."""
    data = scripted_job(delay_ms=0)
    responses = data["agent_definition"]["nodes"][0]["config"]["model"]["responses"]
    responses[1]["tool_calls"][0]["args"] = {"file_path": "/big.md", "content": "b" * 200_000}
    return data


async def test_hostile_input_over_http_and_nats_leaves_the_worker_whole(stack: Stack) -> None:
    started_at = time.monotonic()
    await stack.start_workers(1)
    worker = stack.workers[0]
    assert worker.proc is not None
    pid = worker.proc.pid
    definitions = draw(hostile_definitions(), HOSTILE_DEFINITIONS)
    unreadable = draw(bad_cases(unique_ids), UNREADABLE)
    random_methods = draw(methods, RANDOM_METHODS)
    random_paths = draw(paths, RANDOM_PATHS)

    async with httpx.AsyncClient(base_url=worker.url, timeout=60) as http, \
            Observer(stack) as observer:
        warm_job = scripted_job(delay_ms=0)
        warm = await http.post("/", content=structured(warm_job),
                               headers={"content-type": "application/cloudevents+json"})
        assert warm.status_code == 200, warm.text
        idle = statistics.median([rss_mb(pid) for _ in range(5)])

        samples, stop = Samples(), asyncio.Event()
        sampler = asyncio.create_task(sample(worker.url, pid, samples, stop))
        statuses: Counter[str] = Counter()
        problems: list[str] = []
        gate = asyncio.Semaphore(HTTP_CONCURRENCY)

        async def post(body: bytes, headers: dict[str, str], expect: str, what: str) -> None:
            async with gate:
                response = await http.post("/", content=body, headers=headers)
            statuses[str(response.status_code)] += 1
            got = _verdict(response)
            if got != expect and not (expect == "failed" and got == "413"):
                problems.append(f"{what}: expected {expect}, got {got}: {response.text[:300]}")

        async def hostile_http() -> None:
            jobs = [post(structured(h.data), {"content-type": "application/cloudevents+json"},
                         "413" if h.oversize else "failed", h.what) for h in definitions]
            jobs += [post(c.body, c.headers, "400", c.what) for c in unreadable]
            await asyncio.gather(*jobs)

        async def random_requests() -> None:
            for method in random_methods:
                async with gate:
                    response = await http.request(method, "/")
                statuses[str(response.status_code)] += 1
            for i, path in enumerate(random_paths):
                async with gate:
                    response = await http.request(("GET", "POST", "PUT")[i % 3], path)
                statuses[str(response.status_code)] += 1

        async def hostile_nats() -> None:
            for case in unreadable:
                await observer.js.publish("agent.execute.hostile", case.body,
                                          headers=case.headers)
            for hostile in definitions[:20]:
                if not hostile.oversize:
                    await observer.js.publish("agent.execute.hostile", structured(hostile.data))

        normal_nats = scripted_job(delay_ms=20)
        normal_http = big_result_job()

        async def normal_jobs() -> httpx.Response:
            await asyncio.sleep(0.5)  # into the storm
            await observer.publish([normal_nats])
            return await http.post("/", content=structured(normal_http),
                                   headers={"content-type": "application/cloudevents+json"})

        storm_started = time.monotonic()
        *_, normal = await asyncio.gather(hostile_http(), random_requests(), hostile_nats(),
                                          normal_jobs())
        readable_over_nats = sum(1 for h in definitions[:20] if not h.oversize)
        await observer.wait_all_done(readable_over_nats + 1, timeout=90)
        storm_seconds = time.monotonic() - storm_started
        stop.set()
        await sampler
        metrics = await stack.metrics(worker)
        settings = nats_settings(stack.nats_server.url)
        consumer = await observer.js.consumer_info(settings.stream_name,
                                                   settings.consumer_group)
        results = await observer.results()

    recorded = await _recorded_jobs(stack)
    health = sorted(samples.health)
    p99 = health[int(len(health) * 0.99) - 1]
    peak = max(samples.rss)
    report = (f"{len(definitions)} hostile definitions, {len(unreadable)} unreadable x2 "
              f"(HTTP+NATS), {RANDOM_METHODS} methods, {RANDOM_PATHS} paths in "
              f"{storm_seconds:.1f}s; statuses {dict(statuses)}; RSS idle {idle:.0f} MB, "
              f"peak {peak:.0f} MB ({peak / idle:.2f}x); /health n={len(health)} "
              f"p50 {health[len(health) // 2] * 1000:.1f} ms p99 {p99 * 1000:.1f} ms "
              f"max {health[-1] * 1000:.1f} ms; whole test {time.monotonic() - started_at:.0f}s")
    print(f"\nHOSTILE RUN: {report}")

    assert not problems, f"{len(problems)} wrong verdict(s): {problems[:5]}\n{report}"
    assert not any(code.startswith("5") for code in statuses), (statuses, stack.logs())
    assert not samples.health_errors, samples.health_errors[:5]
    assert normal.status_code == 200 and normal.json()["type"].endswith(".completed"), \
        normal.text[:500]
    assert normal.json()["data"]["result"]["files"]["/big.md"] == "b" * 200_000
    completed = {r.data["job_id"] for r in results if r.subject.endswith(".completed")}
    assert normal_nats["job_id"] in completed

    assert consumer.num_pending == 0 and consumer.num_ack_pending == 0
    assert consumer.num_redelivered == 0, "an unreadable message was redelivered"
    terms = metric_value(metrics, 'agent_executor_nats_messages_processed_total{outcome="term"}')
    assert terms == len(unreadable), (terms, len(unreadable))

    readable = {h.data["job_id"] for h in definitions if not h.oversize}
    readable |= {normal_nats["job_id"], normal_http["job_id"], warm_job["job_id"]}
    strangers = recorded - readable
    assert not strangers, f"job(s) recorded for unreadable input: {sorted(strangers)[:5]}"
    assert readable <= recorded

    assert peak <= RSS_FACTOR * idle, report
    assert p99 < HEALTH_P99_SECONDS, report
    series = [line for line in metrics.splitlines()
              if line.startswith("agent_executor_http_requests_total{")]
    assert len(series) <= 20, series
    assert "Task exception was never retrieved" not in worker.logs()


def _verdict(response: httpx.Response) -> str:
    if response.status_code == 200:
        event = response.json()
        status = event["type"].rsplit(".", 1)[1]
        if status == "failed" and event["data"]["error"]["type"] != "InvalidAgentDefinition":
            return f"failed {event['data']['error']['type']}"
        return status
    if response.status_code == 400:
        body = response.json()
        if set(body) != {"error", "details"} or not body["details"]:
            return "400 without details"
    return str(response.status_code)


async def _recorded_jobs(stack: Stack) -> set[str]:
    conn = await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port,
                                 user=stack.postgres.user, database=stack.database)
    try:
        return {row["job_id"] for row in await conn.fetch("SELECT job_id FROM job_ledger")}
    finally:
        await conn.close()

