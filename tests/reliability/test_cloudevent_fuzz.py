"""Property-based fuzzing of CloudEvent intake (hypothesis), over HTTP and NATS.

- HTTP (the Starlette app on in-memory fakes): every input broken in a known way
  is a 400 with {"error", "details"} and records no job; garbage never gets a 5xx;
  every valid event runs.
- NATS decoding (the consumer's path): broken inputs raise `InvalidJob` only, the
  readable job_id is found, and the settlement is `term` with an InvalidJob result.
- A live `agent-executor serve` on its own nats-server gets a sample of broken
  messages and then one good job: every bad one is terminated once, nothing is
  redelivered or left pending, the consumer keeps running and runs the good job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.codec import job_identity, read_nats_job
from agent_executor.adapters.nats.settlement import RetryPolicy, settle
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import Job
from tests.integration.service import ServiceProcess, wait_for
from tests.reliability.cloudevent_cases import (
    Case,
    bad_cases,
    garbage,
    unique_ids,
    valid_cases,
)
from tests.reliability.harness import scripted_job, structured
from tests.reliability.servers import NatsServer
from tests.unit.conftest import World

NAMES = EventNames()
MAX_EVENT_BYTES = 64 * 1024


def fuzz(examples: int) -> settings:
    """Bounded: the whole suite stays within minutes."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_clear_refusal(response: httpx.Response, case: Case) -> None:
    assert response.status_code == 400, (case.what, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "details"}, (case.what, body)
    assert isinstance(body["error"], str) and body["error"].strip(), (case.what, body)
    details = body["details"]
    assert isinstance(details, list) and details, (case.what, body)
    assert all(isinstance(d, str) and d.strip() for d in details), (case.what, body)


async def _post(case: Case) -> tuple[httpx.Response, World]:
    world = World()
    app = create_app(execute=world.execute, background=BackgroundJobs(world.execute, world.ledger),
                     ledger=world.ledger, events=world.events, probes=[],
                     metrics=PrometheusMetrics(), names=NAMES, max_event_bytes=MAX_EVENT_BYTES)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://fuzz") as client:
        response = await client.post("/", content=case.body, headers=case.headers)
    return response, world


@fuzz(300)
@given(bad_cases())
def test_http_refuses_every_broken_event_with_a_clear_400(case: Case) -> None:
    response, world = asyncio.run(_post(case))
    assert_clear_refusal(response, case)
    assert world.ledger.records == {}, f"{case.what}: a refused event recorded a job"


@fuzz(300)
@given(garbage())
def test_http_answers_garbage_without_a_5xx(case: Case) -> None:
    response, world = asyncio.run(_post(case))
    assert response.status_code < 500, (case, response.text)
    if response.status_code == 200:  # hypothesis built a valid job: it ran
        assert response.json()["type"].endswith((".completed", ".failed"))
    else:
        assert_clear_refusal(response, case)
        assert world.ledger.records == {}


@fuzz(50)
@given(valid_cases())
def test_http_runs_every_valid_event(case: Case) -> None:
    response, world = asyncio.run(_post(case))
    assert response.status_code == 200, (case.what, response.text)
    assert response.json()["subject"] == case.job_id
    assert list(world.ledger.records) == [case.job_id]


def _read(case: Case) -> Job:
    return read_nats_job(case.headers, case.body, NAMES)


@fuzz(500)
@given(bad_cases(), st.integers(1, 5))
def test_nats_decoding_refuses_every_broken_event_with_term(case: Case, delivered: int) -> None:
    with pytest.raises(InvalidJob) as refused:
        _read(case)
    error = refused.value
    assert error.message.strip() and error.details, case.what
    identity = job_identity(case.headers, case.body)
    assert (identity[0] if identity else None) == case.job_id, case.what
    decision = settle(error, delivered, 5, RetryPolicy())
    assert (decision.action, decision.reject, decision.give_up) == ("term", True, None)


@fuzz(500)
@given(garbage())
def test_nats_decoding_of_garbage_raises_nothing_but_invalid_job(case: Case) -> None:
    try:
        _read(case)
    except InvalidJob as exc:
        assert exc.message.strip() and exc.details
    job_identity(case.headers, case.body)  # must not raise either


def _sample(count: int) -> list[Case]:
    """`count` broken messages drawn by hypothesis, each with a job_id of its own."""
    drawn: list[Case] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None)
    @given(bad_cases(unique_ids))
    def collect(case: Case) -> None:
        drawn.append(case)
    collect()
    return drawn


@pytest.fixture
async def live_nats(request: pytest.FixtureRequest) -> AsyncIterator[NatsServer]:
    server = NatsServer()
    request.addfinalizer(server.close)
    await asyncio.to_thread(server.start)
    yield server


LIVE_SAMPLE = 60


async def test_a_live_consumer_terms_every_bad_message_and_keeps_running(
        live_nats: NatsServer, tmp_path: Path) -> None:
    service = ServiceProcess({**live_nats.env(), "AGENT_EXECUTOR_PROFILE": "local"},
                             tmp_path / "service")
    try:
        await service.start(timeout=90)
        async with httpx.AsyncClient() as http:
            await wait_for(lambda: _ready(http, service), 30, "the consumer to be ready")
            cases = _sample(LIVE_SAMPLE)
            canary = scripted_job(delay_ms=0)
            client = await nats.connect(live_nats.url)
            try:
                js = client.jetstream()
                for case in cases:
                    await js.publish("agent.execute.fuzz", case.body, headers=case.headers)
                await js.publish("agent.execute.fuzz", structured(canary))
                await wait_for(lambda: _settled(js), 60, "every message to be settled",
                               interval=0.1)
                consumer = await js.consumer_info("AGENT_EXECUTION", "agent-executor-workers")
                results = await _results(js)
            finally:
                await client.close()
            metrics = (await http.get(f"{service.url}/metrics")).text
            assert await _ready(http, service), "the consumer is not ready any more"
        assert service.proc is not None and service.proc.poll() is None

        assert consumer.num_redelivered == 0 and consumer.num_pending == 0
        assert _metric(metrics, 'nats_messages_processed_total{outcome="term"}') == len(cases)
        assert _metric(metrics, 'nats_messages_processed_total{outcome="ack"}') == 1
        assert _metric(metrics, "nats_redeliveries_total") == 0
        completed = [r for r in results if r["type"].endswith(".completed")]
        assert [r["subject"] for r in completed] == [canary["job_id"]]
        # a rejection per unreadable message, never a job's result
        assert not [r for r in results if r["type"].endswith(".failed")]
        rejected = [r for r in results if r["type"].endswith(".rejected")]
        assert len(rejected) == len({r["id"] for r in rejected}) == len(cases)
        assert {r["data"].get("job_id") for r in rejected} - {None} == {
            c.job_id for c in cases if c.job_id is not None}
        assert {r["data"]["error"]["type"] for r in rejected} == {"InvalidJob"}
    finally:
        service.kill()


async def _ready(http: httpx.AsyncClient, service: ServiceProcess) -> bool:
    response = await http.get(f"{service.url}/ready", timeout=5)
    return response.status_code == 200 and bool(response.json()["checks"]["nats"]["ok"])


async def _settled(js: Any) -> bool:
    info = await js.consumer_info("AGENT_EXECUTION", "agent-executor-workers")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def _results(js: Any) -> list[dict[str, Any]]:
    info = await js.stream_info("AGENT_STATUS")
    if not info.state.messages:
        return []
    return [json.loads((await js.get_msg("AGENT_STATUS", seq)).data)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)]


def _metric(exposition: str, sample: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(f"agent_executor_{sample} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
