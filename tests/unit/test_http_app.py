from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.background import BackgroundJobs
from tests.unit.conftest import World, job_data
from tests.unit.fakes import FakeProbe

NAMES = EventNames()
EXECUTE_TYPE = "dev.my-platform.agent.execute"


def structured(data: Any, **attrs: Any) -> bytes:
    event = {"specversion": "1.0", "id": "e-1", "source": "tests", "type": EXECUTE_TYPE,
             "datacontenttype": "application/json", "data": data}
    event.update(attrs)
    return json.dumps(event).encode()


STRUCTURED = {"content-type": "application/cloudevents+json"}
BINARY = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "tests",
          "ce-type": EXECUTE_TYPE, "content-type": "application/json"}


class Api:
    def __init__(self, world: World, probes: list[FakeProbe] | None = None) -> None:
        self.world = world
        self.metrics = PrometheusMetrics()
        self.background = BackgroundJobs(world.execute, world.ledger)
        self.app = create_app(
            execute=world.execute, background=self.background, ledger=world.ledger,
            events=world.events, metrics=self.metrics, names=NAMES, max_event_bytes=4096,
            probes=probes or [FakeProbe("postgres", embedded=True),
                              FakeProbe("dragonfly", embedded=True),
                              FakeProbe("nats", embedded=True)])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://test")


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    api = Api(world)
    async with api.client:
        yield api


async def test_structured_job_answers_the_completed_result_event(api: Api) -> None:
    response = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/cloudevents+json")
    event = response.json()
    assert event["specversion"] == "1.0"
    assert event["id"] == "job-1:completed"
    assert event["type"] == "dev.my-platform.agent.completed"
    assert event["source"] == "agent-executor"
    assert event["subject"] == "job-1"
    assert event["datacontenttype"] == "application/json"
    assert event["traceparent"].startswith("00-") and len(event["traceparent"]) == 55
    data = event["data"]
    assert data["status"] == "completed" and data["attempts"] == 1
    assert data["result"]["output"] == "Hello world"
    assert data["result"]["files"] == {"/out.md": "Hello world"}
    assert isinstance(data["duration_ms"], int)


async def test_binary_job_is_accepted(api: Api) -> None:
    response = await api.client.post("/", content=json.dumps(job_data()), headers=BINARY)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "completed"


async def test_same_job_again_answers_the_recorded_result_without_running(api: Api) -> None:
    first = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    second = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert second.status_code == 200
    assert second.json() == first.json()
    assert api.world.runtime.calls == ["job-1"]


async def test_job_status_and_events(api: Api) -> None:
    await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)

    status = (await api.client.get("/jobs/job-1")).json()
    assert status["status"] == "completed" and status["attempts"] == 1
    assert status["result"]["output"] == "Hello world"
    assert {"created_at", "updated_at"} <= status.keys()

    sse = await api.client.get("/jobs/job-1/events")
    assert sse.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in sse.text.split("\n\n") if f.startswith("id:")]
    ids = [int(f.split("\n")[0].removeprefix("id: ")) for f in frames]
    assert ids == list(range(1, len(frames) + 1))
    assert "event: end" in frames[-1]

    resumed = await api.client.get("/jobs/job-1/events", headers={"Last-Event-ID": "2"})
    assert resumed.text.count("id: ") == len(frames) - 2
    assert (await api.client.get("/jobs/nope")).status_code == 404
    assert (await api.client.get("/jobs/nope/events")).status_code == 404


async def test_a_finished_job_whose_buffer_lost_its_end_gets_one_from_the_ledger(
        api: Api) -> None:
    """No follower waits for ever: the stream was lost (Dragonfly outage, TTL, a restart
    of the embedded bus), the ledger still knows how the job ended."""
    api.world.events.down = True  # every event of the run is lost
    await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    api.world.events.down = False

    sse = await api.client.get("/jobs/job-1/events")
    frames = [f for f in sse.text.split("\n\n") if f.startswith("id:")]
    assert len(frames) == 1 and "event: end" in frames[0] and frames[0].startswith("id: 1")
    assert '"status":"completed"' in frames[0]
    # a client that already saw the end is not sent another
    await api.world.execute.outbox.deliver(api.world.ledger.records["job-1"].result)  # type: ignore[arg-type]
    last = api.world.events.events["job-1"][-1].seq
    after = await api.client.get("/jobs/job-1/events", headers={"Last-Event-ID": str(last)})
    assert "id:" not in after.text


async def test_a_job_id_resent_with_another_input_is_422_and_the_job_stays(api: Api) -> None:
    """A user fixing a typo and resending under the same job_id is told so, instead of
    getting the old result with 200."""
    first = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    fixed = job_data(input_payload={"messages": [{"role": "user", "content": "hi, fixed"}]})
    again = await api.client.post("/", content=structured(fixed), headers=STRUCTURED)
    assert again.status_code == 422
    body = again.json()
    assert "job-1" in body["error"] and "new job_id" in body["error"]
    retraced = await api.client.post(
        "/", content=structured(job_data(trace_id="another-trace")), headers=STRUCTURED)
    assert retraced.status_code == 200 and retraced.json()["id"] == first.json()["id"]
    assert len(api.world.runtime.calls) == 1


async def test_cancel_route(api: Api) -> None:
    assert (await api.client.post("/jobs/nope/cancel")).status_code == 404
    api.world.runtime.gate = asyncio.Event()
    posted = await api.client.post("/", content=structured(job_data()),
                                   headers={**STRUCTURED, "prefer": "respond-async"})
    assert posted.status_code == 202
    await api.world.runtime.started.wait()
    wrong = await api.client.post("/jobs/job-1/cancel", json={"job_id": "other"})
    assert wrong.status_code == 400 and "job_id" in wrong.json()["error"]
    assert (await api.client.post("/jobs/job-1/cancel", content=b"[1]")).status_code == 400
    answer = await api.client.post("/jobs/job-1/cancel", json={"reason": "enough"})
    assert answer.status_code == 202 and answer.json()["job_id"] == "job-1"

    async def ended() -> bool:
        return (await api.client.get("/jobs/job-1")).json()["status"] == "cancelled"
    for _ in range(500):
        if await ended():
            break
        await asyncio.sleep(0.01)  # polling the status
    view = (await api.client.get("/jobs/job-1")).json()
    assert (view["status"], view["reason"]) == ("cancelled", "enough")
    assert view["finished_at"] is not None
    again = await api.client.post("/jobs/job-1/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]


async def test_respond_async_answers_202_and_the_job_finishes(api: Api) -> None:
    response = await api.client.post(
        "/", content=structured(job_data()),
        headers={**STRUCTURED, "Prefer": "respond-async"})
    assert response.status_code == 202
    assert response.headers["location"] == "/jobs/job-1"

    async def finished() -> None:
        while (await api.client.get("/jobs/job-1")).json()["status"] != "completed":
            await asyncio.sleep(0.01)
    await asyncio.wait_for(finished(), 5)


async def test_a_running_job_answers_409(api: Api) -> None:
    api.world.runtime.gate = asyncio.Event()
    first = asyncio.create_task(
        api.client.post("/", content=structured(job_data()), headers=STRUCTURED))
    await api.world.runtime.started.wait()
    second = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert second.status_code == 409
    assert "running" in second.json()["error"]
    api.world.runtime.gate.set()
    assert (await first).status_code == 200


@pytest.mark.parametrize(("body", "headers", "needle"), [
    (b"this is not json", STRUCTURED, "not valid JSON"),
    (b"[1, 2]", STRUCTURED, "JSON object"),
    (b'{"hello": "world"}', {"content-type": "application/json"}, "not a CloudEvent"),
    (b"", {}, "not a CloudEvent"),
    (structured(job_data(job_id=None)), STRUCTURED, "data.job_id: required"),
    (structured(job_data(job_id="")), STRUCTURED, "data.job_id: must not be empty"),
    (structured(job_data(job_id="x" * 201)), STRUCTURED, "longer than 200"),
    (structured(job_data(job_id=7)), STRUCTURED, "data.job_id: expected a string"),
    (structured("a string"), STRUCTURED, "data: expected an object"),
    (structured([1]), STRUCTURED, "data: expected an object"),
    (structured(None), STRUCTURED, "no data"),
    (structured(job_data(), type="com.example.other"), STRUCTURED, "type: expected"),
    (structured(job_data(), specversion="0.3"), STRUCTURED, "specversion"),
    (structured(job_data(), source=""), STRUCTURED, "source"),
    (structured(job_data(agent_definition="nope")), STRUCTURED, "agent_definition"),
    (structured(job_data(input_payload={"messages": "hi"})), STRUCTURED, "messages"),
    (structured(job_data(input_payload={"messages": [{"role": "boss", "content": "x"}]})),
     STRUCTURED, "messages[0].role"),
    (json.dumps(job_data()).encode(), {**BINARY, "ce-type": "wrong"}, "type: expected"),
    (b"{not json", BINARY, "JSON"),
    (json.dumps(job_data()).encode(), {**BINARY, "content-type": "text/plain"},
     "datacontenttype"),
])
async def test_bad_input_is_a_400_that_says_what_is_wrong(
        api: Api, body: bytes, headers: dict[str, str], needle: str) -> None:
    response = await api.client.post("/", content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert needle in error["error"] + " ".join(error["details"]), error
    assert isinstance(error["details"], list)
    assert api.world.ledger.records == {}  # nothing recorded


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    big = structured(job_data(input_payload={"messages": [
        {"role": "user", "content": "x" * 5000}]}))
    response = await api.client.post("/", content=big, headers=STRUCTURED)
    assert response.status_code == 413
    assert "MAX_EVENT_BYTES" in response.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(10):
            yield b"x" * 1000
    response = await api.client.post("/", content=chunks(), headers=STRUCTURED)
    assert response.status_code == 413


async def test_health_ready_and_metrics(world: World) -> None:
    api = Api(world, [FakeProbe("postgres", embedded=True), FakeProbe("nats", ok=False)])
    async with api.client:
        assert (await api.client.get("/health")).json() == {"status": "ok"}
        ready = await api.client.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not_ready", "checks": {
            "postgres": {"ok": True, "embedded": True},
            "nats": {"ok": False, "detail": "down"}}}
        await api.client.post("/", content=b"bad", headers=STRUCTURED)
        text = (await api.client.get("/metrics")).text
        assert 'agent_executor_http_requests_total{method="POST",route="/",status="400"} 1.0' \
            in text
        assert "agent_executor_jobs_in_progress" in text


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    missing = await api.client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = await api.client.get("/")
    assert wrong.status_code == 405 and "error" in wrong.json()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _binary_body(**changes: Any) -> bytes:
    return json.dumps(job_data(**changes)).encode()


HOSTILE_JOB = json.dumps(job_data(input_payload={"messages": [
    {"role": "user", "content": "hi"}], "deep": "@"}))


@pytest.mark.parametrize(("body", "headers", "field"), [
    (HOSTILE_JOB.replace('"@"', _deep(10_000)).encode(), BINARY, "data: nested deeper than 64"),
    (structured(json.loads(HOSTILE_JOB.replace('"@"', '"x"'))).replace(
        b'"x"', _deep(10_000).encode()), STRUCTURED, "body: nested deeper than 64"),
    (HOSTILE_JOB.replace('"@"', _deep(65)).encode(), BINARY, "data.input_payload.deep"),
    (_binary_body(job_id="job\x00"), BINARY, "data.job_id: holds U+0000"),
    (_binary_body(trace_id="t\udc80"), BINARY, "data.trace_id: holds a lone surrogate"),
    (_binary_body(job_id=" job-1"), BINARY, "data.job_id: has leading or trailing"),
    (_binary_body(job_id="job-1\r\n"), BINARY, "data.job_id: holds a control character"),
    (_binary_body(input_payload={"messages": [{"role": "user", "content": "a\x00"}]}), BINARY,
     "data.input_payload.messages[0].content: holds U+0000"),
    (_binary_body(input_payload={"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "name": "ls", "args": {"path": "\ud800"}}]}]}), BINARY,
     "messages[0].tool_calls[0].args.path: holds a lone surrogate"),
    (_binary_body(input_payload={"messages": [{"role": "tool", "content": "x"}]}), BINARY,
     "data.input_payload.messages[0].tool_call_id: required"),
    (json.dumps(job_data(input_payload={"messages": [{"role": "user", "content": "caf\u00e9"}]}),
                ensure_ascii=False).encode("latin-1"), BINARY, "data: not valid UTF-8"),
    (structured(job_data()).decode().encode("utf-16"), STRUCTURED, "body: not valid UTF-8"),
    (_binary_body(), {**BINARY, "content-type": "application/json; charset=iso-8859-1"},
     "content-type: charset"),
    (_binary_body(), {**BINARY, "ce-source": "%C0%A0"}, "ce-source: percent-encoded value"),
    (_binary_body(), {**BINARY, "ce-id": "%00"}, "ce-id: holds a control character"),
    (structured(job_data(), source="a\x01b"), STRUCTURED, "source: holds a control character"),
])
async def test_unreadable_input_is_a_400_naming_the_field_and_records_nothing(
        world: World, body: bytes, headers: dict[str, str], field: str) -> None:
    app = create_app(execute=world.execute, background=BackgroundJobs(world.execute,
                     world.ledger), ledger=world.ledger, events=world.events, probes=[],
                     metrics=PrometheusMetrics(), names=NAMES, max_event_bytes=1 << 20)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        response = await client.post("/", content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error", "details"} and error["details"], error
    assert any(field in detail for detail in error["details"]), error
    assert world.ledger.records == {}


async def test_a_raw_non_ascii_header_value_is_refused_as_over_nats(api: Api) -> None:
    headers = [(k.encode(), v.encode()) for k, v in BINARY.items() if k != "ce-source"]
    headers.append((b"ce-source", "/caf\u00e9".encode()))
    response = await api.client.post("/", content=_binary_body(), headers=headers)
    assert response.status_code == 400, response.text
    assert "ce-source" in " ".join(response.json()["details"])


def _series(exposition: str, name: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in exposition.splitlines()
            if line.startswith(f"agent_executor_{name}")}


async def test_random_methods_and_paths_leave_the_http_series_bounded(api: Api) -> None:
    import random
    rng = random.Random(13)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i in range(300):
        method = "".join(rng.choice(letters) for _ in range(rng.randint(3, 12)))
        await api.client.request(method, f"/health?i={i}")
    for _ in range(600):
        path = "/" + "/".join(f"{rng.getrandbits(32):x}" for _ in range(rng.randint(1, 4)))
        await api.client.request(rng.choice(["GET", "POST", "DELETE"]), path)
    await api.client.get("/jobs/some-job")
    await api.client.get("/jobs/other-job")
    text = (await api.client.get("/metrics")).text
    methods = {line.split('method="')[1].split('"')[0]
               for line in _series(text, "http_requests_total{")}
    routes = {line.split('route="')[1].split('"')[0]
              for line in _series(text, "http_requests_total{")}
    assert methods <= {"GET", "HEAD", "POST", "OPTIONS", "other"}, methods
    assert routes <= {"/health", "/jobs/{job_id:path}", "unmatched"}, routes
    assert len(_series(text, "http_requests_total{")) <= 12
    assert len(_series(text, "http_request_duration_seconds_bucket")) <= 6 * 14


async def test_an_interrupted_job_is_answered_shown_resumed_and_its_stream_stays_open(
        api: Api) -> None:
    from tests.unit.test_interrupt_and_retry import PAUSE
    api.world.runtime.pauses = [PAUSE]
    posted = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert posted.status_code == 200, posted.text
    event = posted.json()
    assert (event["type"], event["id"]) == ("dev.my-platform.agent.interrupted",
                                            "job-1:interrupted:1")
    assert event["data"]["interrupt"]["interrupt_id"] == "int-1"
    view = (await api.client.get("/jobs/job-1")).json()
    assert view["status"] == "interrupted" and view["finished_at"] is None
    assert view["interrupt"]["requests"][0]["tool"] == "write_file"

    # its stream is followed live (no end yet), not replayed as a finished job's
    follow = asyncio.create_task(api.client.get("/jobs/job-1/events"))
    refused = [
        ({"decisions": [{"type": "approve"}]}, 400, "interrupt_id"),
        ({"interrupt_id": "int-1"}, 400, "decisions"),
        ({"interrupt_id": "int-1", "decisions": [{"type": "nope"}]}, 400, "decisions[0].type"),
        ({"interrupt_id": "int-9", "decisions": [{"type": "approve"}]}, 409, "int-1"),
        ({"interrupt_id": "int-1", "job_id": "other", "decisions": []}, 400, "job_id"),
    ]
    for body, status, needle in refused:
        answer = await api.client.post("/jobs/job-1/resume", json=body)
        assert (answer.status_code, needle in answer.text) == (status, True), answer.text
    unknown = await api.client.post("/jobs/nope/resume", json={
        "interrupt_id": "int-1", "decisions": [{"type": "approve"}]})
    assert unknown.status_code == 404
    assert (await api.client.post("/jobs/job-1/retry")).status_code == 409

    answer = await api.client.post("/jobs/job-1/resume", json={
        "interrupt_id": "int-1", "decisions": [{"type": "approve"}]})
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    assert await api.background.reap_once() == 1
    stream = await asyncio.wait_for(follow, 5)
    kinds = [json.loads(line[5:])["event_type"] for line in stream.text.splitlines()
             if line.startswith("data:")]
    assert "on_interrupt" in kinds and kinds[-1] == "end"
    assert (await api.client.get("/jobs/job-1")).json()["status"] == "completed"
    again = await api.client.post("/jobs/job-1/resume", json={
        "interrupt_id": "int-1", "decisions": [{"type": "approve"}]})
    assert again.status_code == 409


async def test_retry_route_runs_a_failed_job_again(api: Api) -> None:
    from agent_executor.domain.errors import ToolError
    api.world.runtime.error = ToolError("down")
    failed = await api.client.post("/", content=structured(job_data()), headers=STRUCTURED)
    assert failed.json()["data"]["status"] == "failed"
    assert (await api.client.post("/jobs/nope/retry")).status_code == 404
    api.world.runtime.error = None
    answer = await api.client.post("/jobs/job-1/retry", json={"job_id": "job-1"})
    assert answer.status_code == 202 and answer.json()["run"] == 2
    assert await api.background.reap_once() == 1
    await api.background.drain(5)
    view = (await api.client.get("/jobs/job-1")).json()
    assert (view["status"], view["run"]) == ("completed", 2)
    assert (await api.client.post("/jobs/job-1/retry")).status_code == 409
