"""`GET /jobs/{job_id}/events` over a retried job's two runs: it follows until the `end`
of the job's latest run (run 1's `end` passes by), and a finished job's replay always
ends with its latest run's `end` (the interrupted case is in test_http_app.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_executor.domain.errors import ToolError
from agent_executor.domain.events import END
from tests.unit.conftest import World, job_data
from tests.unit.test_http_app import STRUCTURED, Api, structured

STILL_OPEN_SECONDS = 0.2  # a route that stopped at run 1's end would have answered


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    served = Api(world)
    async with served.client:
        yield served


def frames(response: httpx.Response) -> list[dict[str, Any]]:
    """The SSE frames that carry a stream event: their id, event and the event's data."""
    seen = []
    for frame in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
        if "id" in fields:
            seen.append({"id": int(fields["id"]), "event": fields["event"],
                         "data": json.loads(fields["data"])["data"]})
    return seen


async def fail_and_retry(api: Api) -> int:
    """Run 1 fails; the job is retried (run 2 pending). Returns run 1's end's seq."""
    api.world.runtime.error = ToolError("the service was down")
    failed = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert failed.json()["data"]["status"] == "failed"
    [run_1_end] = [f for f in frames(await api.client.get("/jobs/job-1/events"))
                   if f["event"] == END]
    api.world.runtime.error = None
    retried = await api.client.post("/jobs/job-1/retry")
    assert retried.status_code == 202 and retried.json()["run"] == 2
    return int(run_1_end["id"])


async def run_2(api: Api) -> None:
    assert await api.background.reap_once() == 1
    await api.background.drain(5)
    view = (await api.client.get("/jobs/job-1")).json()
    assert (view["status"], view["run"]) == ("completed", 2)


async def test_a_follower_of_a_retried_job_passes_run_1_s_end_and_stops_at_run_2_s(
        api: Api) -> None:
    run_1_end = await fail_and_retry(api)
    following = asyncio.create_task(api.client.get("/jobs/job-1/events"))
    resuming = asyncio.create_task(  # a client that saw run 1's end reconnects
        api.client.get("/jobs/job-1/events", headers={"Last-Event-ID": str(run_1_end)}))
    done, _ = await asyncio.wait({following, resuming}, timeout=STILL_OPEN_SECONDS)
    assert not done  # run 2 is pending: its end is still to come

    await run_2(api)
    seen = frames(await asyncio.wait_for(following, 5))
    assert [f["id"] for f in seen] == list(range(1, len(seen) + 1))
    ends = [f for f in seen if f["event"] == END]
    assert [(e["data"]["status"], e["data"]["run"]) for e in ends] == [
        ("failed", 1), ("completed", 2)]
    assert seen[-1] == ends[-1] and len(seen) > run_1_end + 1  # run 2's tokens, then end
    resumed = frames(await asyncio.wait_for(resuming, 5))
    assert resumed == seen[run_1_end:]


async def test_a_finished_retried_job_replays_to_its_latest_run_s_end_even_when_lost(
        api: Api) -> None:
    await fail_and_retry(api)
    await run_2(api)
    whole = frames(await api.client.get("/jobs/job-1/events"))
    assert [f["data"]["run"] for f in whole if f["event"] == END] == [1, 2]
    assert whole[-1]["event"] == END and whole[-1]["data"]["status"] == "completed"
    saw_all = {"Last-Event-ID": str(whole[-1]["id"])}
    assert frames(await api.client.get("/jobs/job-1/events", headers=saw_all)) == []

    del api.world.events.events["job-1"][-1]  # run 2's end lost with the buffer
    rebuilt = frames(await api.client.get("/jobs/job-1/events"))
    assert rebuilt == whole  # the same end, built from the ledger's result of run 2
