"""`GET /jobs/{job_id}/events` over a retried job's runs, and over an interrupted job:
it follows until the `end` of the job's latest run, and stays open while interrupted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agent_executor.domain.errors import InvalidAgentDefinition
from agent_executor.domain.events import END, INTERRUPT, LLM_STREAM
from agent_executor.domain.result import JobRecord
from tests.unit.conftest import World, job_data, make_job
from tests.unit.test_http_app import STRUCTURED, Api, structured

STILL_OPEN_SECONDS = 0.2  # a wrong route would have answered by then


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    served = Api(world)
    async with served.client:
        yield served


def frames(response: httpx.Response) -> list[dict[str, Any]]:
    """The SSE frames with an id: their id, event and the stream event's data."""
    seen = []
    for frame in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
        if "id" in lines:
            seen.append({"id": int(lines["id"]), "event": lines["event"],
                         "data": json.loads(lines["data"])["data"]})
    return seen


async def fail_then_retry(api: Api) -> JobRecord:
    """Run 1 fails; the job is retried: the ledger names run 2, not started yet."""
    api.world.runtime.error = InvalidAgentDefinition("nodes: no Orchestrator node")
    failed = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert failed.json()["data"]["status"] == "failed"
    api.world.runtime.error = None
    record = replace(api.world.ledger.records["job-1"], status="pending", run=2, result=None)
    api.world.ledger.records["job-1"] = record
    return record


async def run_2(api: Api, record: JobRecord) -> None:
    """The retried run, through the use case (its writer and `end` are run 2's)."""
    claimed = replace(record, status="running", attempts=record.attempts + 1)
    api.world.ledger.records["job-1"] = claimed
    api.world.ledger.leases["job-1"] = ("worker-a", datetime.now(UTC) + timedelta(minutes=5))
    result = await api.world.execute.run_claimed(make_job(), claimed)
    assert result.status == "completed" and result.run == 2


async def test_a_follower_of_a_retried_job_gets_both_runs_and_stops_at_run_2_s_end(
        api: Api) -> None:
    record = await fail_then_retry(api)
    following = asyncio.create_task(api.client.get("/jobs/job-1/events"))
    resuming = asyncio.create_task(  # a client that saw run 1's end (two tokens, then it)
        api.client.get("/jobs/job-1/events", headers={"Last-Event-ID": "3"}))
    done, _ = await asyncio.wait({following, resuming}, timeout=STILL_OPEN_SECONDS)
    assert not done  # run 1's end is not the end: run 2 is pending

    await run_2(api, record)
    seen = frames(await following)
    assert [f["id"] for f in seen] == list(range(1, len(seen) + 1))
    ends = [f for f in seen if f["event"] == END]
    assert [(e["data"]["status"], e["data"]["run"]) for e in ends] == [
        ("failed", 1), ("completed", 2)]
    assert seen[-1] == ends[-1]
    assert [f["id"] for f in frames(await resuming)] == [f["id"] for f in seen[3:]]


async def test_a_finished_retried_job_replays_to_its_latest_run_s_end_even_when_lost(
        api: Api) -> None:
    await run_2(api, await fail_then_retry(api))
    whole = frames(await api.client.get("/jobs/job-1/events"))
    assert [(f["event"], f["data"].get("run")) for f in whole if f["event"] == END] == [
        (END, 1), (END, 2)]
    assert whole[-1]["event"] == END and whole[-1]["data"]["status"] == "completed"
    seen_all = {"Last-Event-ID": str(whole[-1]["id"])}
    assert frames(await api.client.get("/jobs/job-1/events", headers=seen_all)) == []

    del api.world.events.events["job-1"][-1]  # run 2's end lost with the buffer
    rebuilt = frames(await api.client.get("/jobs/job-1/events"))
    assert [f["id"] for f in rebuilt] == [f["id"] for f in whole]
    assert rebuilt[-1] == whole[-1]  # built from the ledger's result of run 2


async def test_an_interrupted_job_s_events_stay_open_until_it_resumes_and_ends(
        api: Api) -> None:
    at = datetime.now(UTC)  # the job is recorded interrupted: its run paused, no `end`
    api.world.ledger.records["job-1"] = JobRecord("job-1", "trace-1", "interrupted", 1,
                                                  "http", at, at, at)
    paused = await api.world.events.writer("job-1", "trace-1", run=1)
    await paused.emit(LLM_STREAM, {"agent": "Orchestrator", "content": "May I?"})
    await paused.emit(INTERRUPT, {"agent": "Orchestrator", "interrupt_id": "i-1",
                                  "requests": []})
    await paused.aclose()
    following = asyncio.create_task(api.client.get("/jobs/job-1/events"))
    done, _ = await asyncio.wait({following}, timeout=STILL_OPEN_SECONDS)
    assert not done  # an interrupt is no end

    resumed = await api.world.events.writer("job-1", "trace-1", run=1)  # same run, seq on
    await resumed.emit(END, {"status": "completed", "run": 1})
    await resumed.aclose()
    assert [(f["id"], f["event"]) for f in frames(await following)] == [
        (1, LLM_STREAM), (2, INTERRUPT), (3, END)]
