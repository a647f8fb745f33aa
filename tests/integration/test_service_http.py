"""`agent-executor serve` as a user runs it: real processes, real HTTP, kills and restarts."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import PostgresDatabase
from tests.integration.service import ROOT, ServiceProcess, migrate, wait_for

HELLO = json.loads((ROOT / "examples/jobs/hello.json").read_text())
BINARY = {"ce-specversion": "1.0", "ce-source": "tests",
          "ce-type": "dev.my-platform.agent.execute", "content-type": "application/json"}


def job(template: dict[str, Any] = HELLO, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(template)
    data["job_id"] = f"{data['job_id']}-{uuid.uuid4().hex[:8]}"
    data.update(changes)
    return data


def slow_job(steps: int = 6, delay_ms: int = 300) -> dict[str, Any]:
    """One orchestrator writing one file a step, `delay_ms` before each model answer."""
    data = job()
    model = data["agent_definition"]["nodes"][0]["config"]["model"]
    model["delay_ms"] = delay_ms
    model["responses"] = [
        {"content": f"Step {i}.", "tool_calls": [
            {"name": "write_file", "args": {"file_path": f"/step-{i}.md", "content": f"{i}"}}]}
        for i in range(steps)] + [{"content": "All steps done."}]
    return data


async def post(client: httpx.AsyncClient, url: str, data: dict[str, Any],
               **headers: str) -> httpx.Response:
    return await client.post(url + "/", content=json.dumps(data),
                             headers={**BINARY, "ce-id": uuid.uuid4().hex, **headers},
                             timeout=60)


async def sse_events(client: httpx.AsyncClient, url: str, job_id: str,
                     last_id: int | None = None) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    events = []
    async with client.stream("GET", f"{url}/jobs/{job_id}/events", headers=headers,
                             timeout=60) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    service = await ServiceProcess({}, tmp_path).start()
    yield service
    service.kill()


async def test_quick_start_on_embedded_defaults(embedded: ServiceProcess,
                                                client: httpx.AsyncClient) -> None:
    url = embedded.url
    ready = (await client.get(f"{url}/ready")).json()
    assert ready["status"] == "ready"
    assert all(check["embedded"] for check in ready["checks"].values())

    data = job()
    response = await post(client, url, data)
    assert response.status_code == 200, response.text
    event = response.json()
    assert (event["id"], event["type"]) == (f"{data['job_id']}:completed",
                                            "dev.my-platform.agent.completed")
    assert event["data"]["result"]["files"] == {"/hello.md": "# Hello\n\nHello, world!\n"}

    status = (await client.get(f"{url}/jobs/{data['job_id']}")).json()
    assert (status["status"], status["attempts"]) == ("completed", 1)

    events = await sse_events(client, url, data["job_id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event_type"] == "end"
    assert {"on_llm_stream", "on_tool_start", "on_tool_end"} <= {e["event_type"] for e in events}
    assert await sse_events(client, url, data["job_id"], last_id=len(events) - 2) == events[-2:]

    again = await post(client, url, data)
    assert again.json() == event  # recorded result, same event id, not run again
    assert (await client.get(f"{url}/jobs/{data['job_id']}")).json()["attempts"] == 1


async def test_live_events_follow_a_running_job(embedded: ServiceProcess,
                                                client: httpx.AsyncClient) -> None:
    data = slow_job(steps=3, delay_ms=150)
    accepted = await post(client, embedded.url, data, Prefer="respond-async")
    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/jobs/{data['job_id']}"
    events = await sse_events(client, embedded.url, data["job_id"])  # live until `end`
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"]["status"] == "completed"
    assert sorted(events[-1]["data"]["result"]["files"]) == [f"/step-{i}.md" for i in range(3)]


async def test_bad_input_over_real_http_is_a_clear_400_or_413(
        embedded: ServiceProcess, client: httpx.AsyncClient) -> None:
    url = embedded.url
    cases = [(b"not json", {"content-type": "application/cloudevents+json"}),
             (json.dumps({**job(), "job_id": ""}).encode(), {**BINARY, "ce-id": "x"})]
    for body, headers in cases:
        response = await client.post(url + "/", content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]
    huge = job(input_payload={"messages": [{"role": "user", "content": "x" * 1_100_000}]})
    response = await post(client, url, huge)
    assert response.status_code == 413
    assert (await client.get(f"{url}/health")).status_code == 200


async def test_invalid_agent_definition_is_a_recorded_failed_job(
        embedded: ServiceProcess, client: httpx.AsyncClient) -> None:
    data = job()
    data["agent_definition"]["nodes"][0]["type"] = "Specialist"
    response = await post(client, embedded.url, data)
    assert response.status_code == 200
    event = response.json()
    assert event["type"] == "dev.my-platform.agent.failed"
    assert event["data"]["error"]["type"] == "InvalidAgentDefinition"
    assert "Orchestrator" in event["data"]["error"]["message"]
    status = (await client.get(f"{embedded.url}/jobs/{data['job_id']}")).json()
    assert status["status"] == "failed" and status["error"]["type"] == "InvalidAgentDefinition"


async def test_results_survive_a_restart(tmp_path: Path, client: httpx.AsyncClient) -> None:
    data = job()
    first = await ServiceProcess({}, tmp_path).start()
    try:
        result = (await post(client, first.url, data)).json()
    finally:
        assert first.terminate() == 0  # SIGTERM: clean exit
    second = await ServiceProcess({}, tmp_path).start()
    try:
        again = await post(client, second.url, data)
        assert again.json() == result
        status = (await client.get(f"{second.url}/jobs/{data['job_id']}")).json()
        assert status["attempts"] == 1
    finally:
        second.kill()


@pytest.fixture
async def postgres_env(postgres_db: PostgresDatabase) -> dict[str, str]:
    env = {**postgres_db.env(), "JOB_LEASE_SECONDS": "2"}
    await asyncio.to_thread(migrate, env)
    return env


async def test_a_killed_worker_s_job_completes_by_itself_after_restart(
        postgres_env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient) -> None:
    data = slow_job(steps=6, delay_ms=300)
    job_id = data["job_id"]
    service = await ServiceProcess(postgres_env, tmp_path).start()
    try:
        assert (await post(client, service.url, data, Prefer="respond-async")).status_code == 202

        async def progressed() -> bool:  # a few steps checkpointed, not all
            status = (await client.get(f"{service.url}/jobs/{job_id}")).json()
            return status["status"] == "running" and await _files_written(postgres_env,
                                                                          job_id) >= 2
        await wait_for(progressed, 30, "the job to get through two steps")
    finally:
        service.kill()  # SIGKILL mid-job: no goodbye, the lease is left to expire

    restarted = await ServiceProcess(postgres_env, tmp_path).start()
    try:
        async def finished() -> dict[str, Any] | None:
            status = (await client.get(f"{restarted.url}/jobs/{job_id}")).json()
            return status if status["status"] in ("completed", "failed") else None
        status = await wait_for(finished, 60, "the orphaned job to be taken over")
        assert status["status"] == "completed", status
        assert status["attempts"] == 2
        messages = status["result"]["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == [
            data["input_payload"]["messages"][0]["content"]]
        calls = [c["args"]["file_path"] for m in messages for c in m.get("tool_calls", [])]
        assert calls == [f"/step-{i}.md" for i in range(6)]  # every step once
        assert sorted(status["result"]["files"]) == sorted(calls)
    finally:
        restarted.kill()


async def _files_written(env: dict[str, str], job_id: str) -> int:
    import asyncpg
    conn = await asyncpg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]),
                                 user=env["POSTGRES_USER"], database=env["POSTGRES_DB"])
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM checkpoint_writes WHERE thread_id = $1 AND channel = 'files'",
            job_id)
        return int(count)
    finally:
        await conn.close()


async def test_two_workers_never_run_one_job_at_once(
        postgres_env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient) -> None:
    a = await ServiceProcess(postgres_env, tmp_path / "a").start()
    b = await ServiceProcess(postgres_env, tmp_path / "b").start()
    try:
        data = slow_job(steps=2, delay_ms=300)
        first, second = await asyncio.gather(post(client, a.url, data),
                                             post(client, b.url, data))
        codes = sorted([first.status_code, second.status_code])
        assert codes == [200, 409], (first.text, second.text)
        conflict = first if first.status_code == 409 else second
        assert "running" in conflict.json()["error"]
        done = first if first.status_code == 200 else second
        assert done.json()["data"]["attempts"] == 1
        # once finished, both answer the recorded result, across workers
        again = await post(client, (b if done is first else a).url, data)
        assert again.status_code == 200 and again.json() == done.json()
    finally:
        a.kill()
        b.kill()


async def test_the_team_example_over_http_streams_every_agent(
        embedded: ServiceProcess, client: httpx.AsyncClient) -> None:
    team = json.loads((ROOT / "examples/jobs/spec-builder.json").read_text())
    data = job(team)
    response = await post(client, embedded.url, data)
    assert response.status_code == 200, response.text
    files = response.json()["data"]["result"]["files"]
    assert sorted(files) == ["/spec/architecture.md", "/spec/requirements.md"]

    events = await sse_events(client, embedded.url, data["job_id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event_type"] == "end"
    streaming = {e["data"]["agent"] for e in events if e["event_type"] == "on_llm_stream"}
    assert streaming == {"Orchestrator", "requirements-analyst", "architect"}
    starts = {e["data"]["call_id"]: e["data"]["tool"] for e in events
              if e["event_type"] == "on_tool_start"}
    ends = {e["data"]["call_id"]: e["data"]["tool"] for e in events
            if e["event_type"] == "on_tool_end"}
    assert starts == ends
    assert {"task", "write_file"} <= set(starts.values())
