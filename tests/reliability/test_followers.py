"""A thousand SSE followers of one job on one served worker (Dragonfly configured): every
follower gets every event of the job, in order, and its `end`; none an empty 200.

Before: each follower held a Pub/Sub connection of its own from redis-py's pool of
100; of 300 followers, 201 got a 200 and then an empty stream that ended at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from tests.integration.service import ServiceProcess
from tests.reliability.harness import scripted_job, structured
from tests.reliability.servers import RedisServer

FOLLOWERS = 1000
ENDS: list[float] = []  # when each follower read its `end`
DELAY_MS = 400  # per model step: the job runs (~7 s) while the followers join


async def _follow(port: int, path: str,
                  opened: list[float]) -> tuple[int, list[int], list[str]]:
    """(status, the seq of each event, the event types), read until the server ends the
    stream. A bare HTTP/1.0 request (the response is then not chunked, it ends when the
    server closes): a thousand httpx streams would cost this test more CPU than the
    server spends serving them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    seqs: list[int] = []
    types: list[str] = []
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = int((await reader.readline()).split()[1])
        opened.append(time.perf_counter())
        async for raw in reader:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data: "):
                event = json.loads(line[6:])
                seqs.append(event["seq"])
                types.append(event["event_type"])
                if event["event_type"] == "end":
                    ENDS.append(time.perf_counter())
    finally:
        writer.close()
    return status, seqs, types


async def test_a_thousand_sse_followers_on_one_worker_all_get_the_whole_stream(
        tmp_path: Path, redis_server: RedisServer) -> None:
    await asyncio.to_thread(redis_server.start)
    worker = ServiceProcess({"AGENT_EXECUTOR_PROFILE": "local", **redis_server.env(),
                             "LOG_LEVEL": "WARNING"}, tmp_path / "worker")
    await worker.start(timeout=90)
    job = scripted_job(DELAY_MS)
    try:
        async with httpx.AsyncClient(base_url=worker.url, timeout=30) as client:
            posted = await client.post("/", content=structured(job), headers={
                "content-type": "application/cloudevents+json", "prefer": "respond-async"})
            assert posted.status_code == 202, posted.text
            started = time.perf_counter()
            url = f"/jobs/{job['job_id']}/events"
            opened: list[float] = []
            followers = [asyncio.create_task(_follow(worker.port, url, opened))
                         for _ in range(FOLLOWERS)]
            results = await asyncio.wait_for(asyncio.gather(*followers), 90)
            elapsed = time.perf_counter() - started
            status = (await client.get(f"/jobs/{job['job_id']}")).json()["status"]
    finally:
        worker.kill()
    assert status == "completed"
    expected = results[0][1]
    full = [r for r in results if r[0] == 200 and r[1] == expected and r[2][-1:] == ["end"]]
    empty = [r for r in results if not r[1]]
    print(f"\n{FOLLOWERS} SSE followers: {len(full)} got the whole stream "
          f"({len(expected)} events), {len(empty)} empty, in {elapsed:.1f}s (the last "
          f"response started after {max(opened) - started:.1f}s)")
    print(f"`end` reached the followers {min(ENDS) - started:.1f}-{max(ENDS) - started:.1f}s "
          "after the job was posted")
    assert expected == list(range(1, len(expected) + 1)) and len(expected) > 5
    assert len(full) == FOLLOWERS, f"{FOLLOWERS - len(full)} follower(s) not fully served"
