"""Human in the loop and retry in the production profile, two workers on one
consumer: an interrupted job survives every process and backing service being
restarted and resumes once; a failed job retried after its cause is fixed completes
as run 2; cancels and resumes fired at random jobs while workers are SIGKILLed leave
every job with one terminal result per run (CONTRACT section 2a)."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import uuid
from collections import Counter
from typing import Any

import httpx

from tests.integration.service import ROOT, wait_for
from tests.reliability.harness import Observer, Stack, StoredResult

APPROVAL: dict[str, Any] = json.loads((ROOT / "examples/jobs/approval.json").read_text())
FILE = {"/hello.md": "# Hello\n\nHello, world!\n"}


def approval_job(delay_ms: int = 0) -> dict[str, Any]:
    data = copy.deepcopy(APPROVAL)
    data["job_id"] = f"hitl-{uuid.uuid4().hex[:12]}"
    data["trace_id"] = uuid.uuid4().hex
    data["agent_definition"]["nodes"][0]["config"]["model"]["delay_ms"] = delay_ms
    return data


def outage_job() -> dict[str, Any]:
    """Plans, calls `call_service` (down until the test ends the outage), then answers."""
    data = copy.deepcopy(APPROVAL)
    data["job_id"] = f"retry-{uuid.uuid4().hex[:12]}"
    config = data["agent_definition"]["nodes"][0]["config"]
    config.pop("interrupt_on")
    config["tools"] = ["call_service"]
    config["model"]["responses"] = [
        {"content": "Planning.", "tool_calls": [{"name": "write_todos", "args": {
            "todos": [{"content": "ask the service", "status": "in_progress"}]}}]},
        {"content": "Asking.", "tool_calls": [{"name": "call_service",
                                               "args": {"request": "status"}}]},
        {"content": "The service answered."}]
    return data


async def results_of(observer: Observer, job_id: str) -> list[StoredResult]:
    return [r for r in await observer.results() if r.data["job_id"] == job_id]


async def wait_result(observer: Observer, job_id: str, msg_id: str,
                      timeout: float = 60) -> StoredResult:
    async def stored() -> StoredResult | None:
        try:
            found = [r for r in await results_of(observer, job_id) if r.msg_id == msg_id]
        except Exception:  # NATS restarting: ask again
            return None
        return found[0] if found else None
    result = await wait_for(stored, timeout, f"{msg_id} on the status stream", interval=0.1)
    assert isinstance(result, StoredResult)
    return result


async def test_an_interrupted_job_survives_every_restart_and_resumes_once(
        stack: Stack) -> None:
    await stack.start_workers(2)
    async with Observer(stack) as observer, httpx.AsyncClient(timeout=10) as client:
        job = approval_job()
        await observer.publish([job])
        paused = await wait_result(observer, job["job_id"], f"{job['job_id']}:interrupted:1")
        assert paused.subject == "agent.status.interrupted"
        interrupt = paused.data["interrupt"]
        assert [r["tool"] for r in interrupt["requests"]] == ["write_file"]

        # every process and backing service goes down and comes back while it waits
        stack.stop_workers()
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.to_thread(stack.nats_server.stop)
        await asyncio.gather(asyncio.to_thread(stack.postgres.start),
                             asyncio.to_thread(stack.nats_server.start))
        await stack.start_workers(2)

        view = (await client.get(f"{stack.workers[1].url}/jobs/{job['job_id']}")).json()
        assert view["status"] == "interrupted"
        assert view["interrupt"]["interrupt_id"] == interrupt["interrupt_id"]
        wrong = await client.post(f"{stack.workers[1].url}/jobs/{job['job_id']}/resume",
                                  json={"interrupt_id": "nope",
                                        "decisions": [{"type": "approve"}]})
        assert wrong.status_code == 409, wrong.text
        answer = await client.post(f"{stack.workers[1].url}/jobs/{job['job_id']}/resume",
                                   json={"interrupt_id": interrupt["interrupt_id"],
                                         "decisions": [{"type": "approve"}]})
        assert answer.status_code == 202, answer.text
        done = await wait_result(observer, job["job_id"], f"{job['job_id']}:completed")
        assert done.data["result"]["files"] == FILE
        assert [r.msg_id for r in await results_of(observer, job["job_id"])] == [
            f"{job['job_id']}:interrupted:1", f"{job['job_id']}:completed"]
        messages = done.data["result"]["messages"]
        assert [m["role"] for m in messages].count("user") == 1
        events = await observer.stream_events(job["job_id"])
        kinds = [e["event_type"] for e in events]
        assert kinds.count("on_interrupt") == 1 and kinds.count("end") == 1
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_edit_and_reject_over_http_jobs(stack: Stack) -> None:
    await stack.start_workers(2)
    async with Observer(stack) as observer, httpx.AsyncClient(timeout=10) as client:
        decisions = {"edit": {"type": "edit", "input": {"file_path": "/hi.md",
                                                         "content": "Hi!"}},
                     "reject": {"type": "reject", "message": "no files today"}}
        expected = {"edit": {"/hi.md": "Hi!"}, "reject": {}}
        for kind, decision in decisions.items():
            job = approval_job()
            posted = await client.post(
                f"{stack.workers[0].url}/", content=json.dumps(job),
                headers={"ce-specversion": "1.0", "ce-id": uuid.uuid4().hex,
                         "ce-source": "/reliability", "content-type": "application/json",
                         "ce-type": "dev.my-platform.agent.execute"})
            assert posted.status_code == 200 and posted.json()["data"]["status"] == \
                "interrupted", posted.text
            interrupt_id = posted.json()["data"]["interrupt"]["interrupt_id"]
            bad = await client.post(f"{stack.workers[1].url}/jobs/{job['job_id']}/resume",
                                    json={"interrupt_id": interrupt_id,
                                          "decisions": [decision, decision]})
            assert bad.status_code == 400, bad.text
            answer = await client.post(f"{stack.workers[1].url}/jobs/{job['job_id']}/resume",
                                       json={"interrupt_id": interrupt_id,
                                             "decisions": [decision]})
            assert answer.status_code == 202, answer.text
            done = await wait_result(observer, job["job_id"], f"{job['job_id']}:completed")
            assert done.data["result"]["files"] == expected[kind], (kind, done.data)


async def test_a_failed_job_retried_after_its_cause_is_fixed_completes_as_run_two(
        stack: Stack) -> None:
    outage = stack.tmp / "outage"
    outage.write_text("down")
    stack.extra_env["AGENT_EXECUTOR_EXAMPLE_OUTAGE_FILE"] = str(outage)
    await stack.start_workers(2)
    async with Observer(stack) as observer, httpx.AsyncClient(timeout=10) as client:
        job = outage_job()
        await observer.publish([job])
        failed = await wait_result(observer, job["job_id"], f"{job['job_id']}:failed")
        assert failed.data["error"]["type"] == "ToolError"
        not_yet = await client.post(f"{stack.workers[0].url}/jobs/never-sent/retry")
        assert not_yet.status_code == 404

        outage.unlink()  # the cause is fixed
        await observer.js.publish("agent.execute.retry", json.dumps({
            "specversion": "1.0", "id": uuid.uuid4().hex, "source": "/reliability",
            "type": "dev.my-platform.agent.retry", "datacontenttype": "application/json",
            "data": {"job_id": job["job_id"]}}).encode(),
            headers={"Content-Type": "application/cloudevents+json"})
        done = await wait_result(observer, job["job_id"], f"{job['job_id']}:completed:2")
        assert (done.data["run"], done.subject) == (2, "agent.status.completed")
        messages = done.data["result"]["messages"]
        roles = [m["role"] for m in messages]
        # the input once, and each of the three model turns once: the two turns that
        # ran before the failure were not run again
        assert roles.count("user") == 1, roles
        assert roles.count("assistant") == 3, roles
        events = await observer.stream_events(job["job_id"])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        ends = [(e["data"]["status"], e["data"]["run"]) for e in events
                if e["event_type"] == "end"]
        assert ends == [("failed", 1), ("completed", 2)]
        assert events[-1]["event_type"] == "end"
        again = await client.post(f"{stack.workers[1].url}/jobs/{job['job_id']}/retry")
        assert again.status_code == 409


async def test_cancels_and_resumes_at_random_jobs_while_workers_are_killed(
        stack: Stack) -> None:
    """Every job ends with exactly one terminal result per run and an interrupt event per
    pause; no gated tool call runs twice."""
    rng = random.Random(20261202)
    await stack.start_workers(2)
    jobs = [approval_job(delay_ms=150) for _ in range(16)]
    cancel = {job["job_id"] for job in rng.sample(jobs, 5)}
    async with Observer(stack) as observer, httpx.AsyncClient(timeout=5) as client:
        await observer.publish(jobs)
        ended: dict[str, str] = {}
        kills = 0

        async def steer_once() -> None:
            url = rng.choice(stack.workers).url
            for job in jobs:
                job_id = job["job_id"]
                if job_id in ended:
                    continue
                try:
                    view = (await client.get(f"{url}/jobs/{job_id}")).json()
                    if view.get("status") in ("completed", "cancelled", "failed"):
                        ended[job_id] = view["status"]
                    elif job_id in cancel and rng.random() < 0.5:
                        await client.post(f"{url}/jobs/{job_id}/cancel",
                                          json={"reason": "chaos"})
                    elif view.get("status") == "interrupted":
                        await client.post(f"{url}/jobs/{job_id}/resume", json={
                            "interrupt_id": view["interrupt"]["interrupt_id"],
                            "decisions": [{"type": "approve"}]})
                except (httpx.HTTPError, ValueError, KeyError):
                    continue  # that worker is being killed: next round

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        while len(ended) < len(jobs):
            assert loop.time() < deadline, f"{len(jobs) - len(ended)} job(s) never ended"
            await steer_once()
            if kills < 4 and rng.random() < 0.3:
                await stack.kill_and_restart(rng.randrange(2))
                kills += 1
        await wait_for(observer.settled, 60, "a settled consumer", interval=0.25)

        results = await observer.results()
        print(f"{len(jobs)} jobs, {kills} kills, ended: {Counter(ended.values())}")
        for job in jobs:
            job_id = job["job_id"]
            mine = [r for r in results if r.data["job_id"] == job_id]
            terminal = [r.msg_id for r in mine if r.data["status"] != "interrupted"]
            assert terminal == [f"{job_id}:{ended[job_id]}"], (job_id, terminal)
            pauses = Counter(r.msg_id for r in mine if r.data["status"] == "interrupted")
            assert all(n == 1 for n in pauses.values()), (job_id, pauses)
            if ended[job_id] == "completed":
                [done] = [r for r in mine if r.data["status"] == "completed"]
                assert done.data["result"]["files"] == FILE
            events = await observer.stream_events(job_id)
            writes = Counter(e["data"]["call_id"] for e in events
                             if e["event_type"] == "on_tool_end"
                             and e["data"]["tool"] == "write_file")
            assert all(n == 1 for n in writes.values()), (job_id, writes)
            assert [e["event_type"] for e in events].count("end") == 1
        assert any(s == "completed" for s in ended.values())
