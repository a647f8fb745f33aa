"""Cancel in the production profile, two workers on one consumer: a running job
cancelled from the other replica, over HTTP and over NATS, ends `cancelled` within
5 s with one result and one `end`, and its model is not called afterwards."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from tests.integration.service import wait_for
from tests.reliability.harness import Observer, Stack, scripted_job

SLOW_TURN_MS = 1500  # a job of three turns runs for seconds: long enough to cancel
CANCEL_WITHIN_SECONDS = 5.0
CE = {"ce-specversion": "1.0", "ce-source": "/reliability", "content-type": "application/json"}


async def _running_on(stack: Stack, client: httpx.AsyncClient, job_id: str) -> int:
    """Index of the worker whose metrics show the job in progress (one job at a time)."""
    async def find() -> int | None:
        view = await client.get(f"{stack.workers[0].url}/jobs/{job_id}")
        if view.status_code != 200 or view.json()["status"] != "running":
            return None
        for i, worker in enumerate(stack.workers):
            text = (await client.get(f"{worker.url}/metrics")).text
            if "agent_executor_jobs_in_progress 1.0" in text:
                return i + 1
        return None
    return int(await wait_for(find, 60, f"{job_id} to run", interval=0.05)) - 1


async def _check_cancelled(observer: Observer, job_id: str, cancelled_at: float) -> None:
    async def stored() -> Any:
        return [r for r in await observer.results() if r.data["job_id"] == job_id]
    results = await wait_for(stored, 30, f"{job_id}'s result", interval=0.05)
    took = time.monotonic() - cancelled_at
    print(f"{job_id}: cancel to result in {took * 1000:.0f} ms")
    assert took < CANCEL_WITHIN_SECONDS, f"cancelled after {took:.1f}s"
    assert [r.msg_id for r in results] == [f"{job_id}:cancelled"]
    assert results[0].subject == "agent.status.cancelled"
    assert results[0].data["reason"] == "stop"

    async def ended() -> Any:
        events = await observer.stream_events(job_id)
        return events if events and events[-1]["event_type"] == "end" else None
    events = await wait_for(ended, 10, f"{job_id}'s end event")
    assert [e["event_type"] for e in events].count("end") == 1
    assert events[-1]["data"]["status"] == "cancelled"
    before = len(events)
    await asyncio.sleep(SLOW_TURN_MS / 1000 * 1.5)  # a model turn's time: nothing more comes
    assert len(await observer.stream_events(job_id)) == before


async def test_a_running_job_is_cancelled_from_the_other_replica(stack: Stack) -> None:
    await stack.start_workers(2)
    async with Observer(stack) as observer, httpx.AsyncClient(timeout=10) as client:
        over_nats = scripted_job(SLOW_TURN_MS)
        await observer.publish([over_nats])
        runner = await _running_on(stack, client, over_nats["job_id"])
        other = stack.workers[1 - runner]
        asked = time.monotonic()
        answer = await client.post(f"{other.url}/jobs/{over_nats['job_id']}/cancel",
                                   json={"reason": "stop"})
        assert answer.status_code == 202, answer.text
        await _check_cancelled(observer, over_nats["job_id"], asked)

        over_http = scripted_job(SLOW_TURN_MS)
        posted = await client.post(f"{stack.workers[0].url}/", content=json.dumps(over_http),
                                   headers={**CE, "ce-id": uuid.uuid4().hex,
                                            "ce-type": "dev.my-platform.agent.execute",
                                            "prefer": "respond-async"})
        assert posted.status_code == 202
        await _running_on(stack, client, over_http["job_id"])
        asked = time.monotonic()
        await observer.js.publish(  # a cancel CloudEvent on the intake subject
            "agent.execute.cancel", json.dumps({
                "specversion": "1.0", "id": uuid.uuid4().hex, "source": "/reliability",
                "type": "dev.my-platform.agent.cancel", "datacontenttype": "application/json",
                "data": {"job_id": over_http["job_id"], "reason": "stop"}}).encode(),
            headers={"Content-Type": "application/cloudevents+json"})
        await _check_cancelled(observer, over_http["job_id"], asked)

        finished = await client.post(f"{other.url}/jobs/{over_nats['job_id']}/cancel")
        assert finished.status_code == 409
        unknown = await client.post(f"{other.url}/jobs/never-sent/cancel")
        assert unknown.status_code == 404
