"""GET /jobs, GET /openapi.json, CORS and bearer tokens on the HTTP app (fakes)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.http.auth import OPEN_PATHS, BearerTokens
from agent_executor.adapters.http.console import CONSOLE_PATHS
from agent_executor.adapters.http.openapi import openapi_spec
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.background import BackgroundJobs
from tests.unit.conftest import World, make_job
from tests.unit.fakes import FakeProbe

TOKEN = "s3cret-token_A"
ORIGIN = "https://console.example"


def build(world: World, **options: Any) -> httpx.AsyncClient:
    app = create_app(execute=world.execute, background=BackgroundJobs(world.execute,
                                                                      world.ledger),
                     ledger=world.ledger, events=world.events, metrics=PrometheusMetrics(),
                     names=EventNames(), max_event_bytes=4096,
                     probes=[FakeProbe("postgres", embedded=True)], **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with build(world) as client:
        yield client


async def _jobs(world: World, n: int) -> None:
    for i in range(n):
        job = make_job(f"job-{i:02d}")
        await world.ledger.claim(job, "nats" if i % 2 else "http", "w", 30)


# GET /jobs

@pytest.mark.parametrize("path", ["/jobs", "/jobs/"])
async def test_list_is_served_at_jobs_with_or_without_the_slash(
        world: World, client: httpx.AsyncClient, path: str) -> None:
    await _jobs(world, 3)
    response = await client.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [j["job_id"] for j in body["jobs"]] == ["job-02", "job-01", "job-00"]
    assert body["next_cursor"] is None
    assert set(body["jobs"][0]) >= {"job_id", "status", "attempts", "source", "created_at"}


async def test_list_pages_follow_next_cursor_and_filter(
        world: World, client: httpx.AsyncClient) -> None:
    await _jobs(world, 11)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": "4", "source": "nats"}
    while True:
        body = (await client.get("/jobs", params=params)).json()
        seen += [j["job_id"] for j in body["jobs"]]
        assert all(j["source"] == "nats" for j in body["jobs"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == [f"job-{i:02d}" for i in (9, 7, 5, 3, 1)]
    by_status = await client.get("/jobs?status=running&status=pending,cancelled")
    assert len(by_status.json()["jobs"]) == 11


async def test_list_shows_no_result_bodies(world: World, client: httpx.AsyncClient) -> None:
    response = await client.post("/", content=(
        b'{"specversion":"1.0","id":"e","source":"t","type":"dev.my-platform.agent.execute",'
        b'"data":{"job_id":"done","trace_id":"t","agent_definition":{},'
        b'"input_payload":{"messages":[{"role":"user","content":"hi"}]}}}'),
        headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 200, response.text
    assert "result" in (await client.get("/jobs/done")).json()
    [listed] = (await client.get("/jobs")).json()["jobs"]
    assert listed["status"] == "completed" and "result" not in listed and "error" not in listed


@pytest.mark.parametrize(("query", "named"), [
    ("status=done", "status"), ("source=carrier-pigeon", "source"), ("limit=0", "limit"),
    ("limit=501", "limit"), ("limit=ten", "limit"), ("limit=1&limit=2", "limit"),
    ("cursor=not-a-cursor", "cursor"), ("sort=asc", "sort"), ("limit=%C2%B2", "limit")])
async def test_a_bad_list_parameter_is_400_naming_it(
        client: httpx.AsyncClient, query: str, named: str) -> None:
    response = await client.get(f"/jobs?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "details"}
    assert any(d.startswith(f"{named}:") for d in body["details"]), body


async def test_list_limit_bounds_are_accepted(world: World, client: httpx.AsyncClient) -> None:
    await _jobs(world, 2)
    assert len((await client.get("/jobs?limit=1")).json()["jobs"]) == 1
    assert len((await client.get("/jobs?limit=500")).json()["jobs"]) == 2


# GET /openapi.json

async def test_openapi_is_valid_31_and_lists_every_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    served = _served(client)
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item}
    assert documented == served


def _served(client: httpx.AsyncClient) -> set[tuple[str, str]]:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    routes = transport.app.routes  # type: ignore[attr-defined]
    served = set()
    for route in routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        if path.endswith("/") and path != "/":
            continue  # /jobs/ is /jobs
        served |= {(path, m) for m in route.methods or () if m != "HEAD"}
    return served


def test_openapi_security_leaves_only_the_probes_and_the_console_page_open() -> None:
    document = openapi_spec()
    open_paths = {path for path, item in document["paths"].items()
                  for op in item.values() if op.get("security") == []}
    assert open_paths == OPEN_PATHS | {"/ui", "/ui/{asset}"}
    assert document["security"] == [{"bearer": []}]


# API_TOKENS

async def test_with_tokens_every_route_but_the_probes_is_401_without_one(
        world: World) -> None:
    async with build(world, api_tokens=(TOKEN, "other")) as client:
        served = _served(client)
        assert len(served) >= 8
        for path, method in sorted(served):
            url = path.replace("{job_id}", "job-1").replace("{asset}", "app.js")
            response = await client.request(method, url)
            if path in OPEN_PATHS or url in CONSOLE_PATHS:
                assert response.status_code != 401, (method, path)
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["connection"] == "close"  # its body was not read
            body = response.json()
            assert set(body) == {"error", "details"} and body["details"]
        for header in ({"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                       {"authorization": "Bearer"}, {"authorization": f"Bearer {TOKEN}x"}):
            refused = await client.get("/jobs", headers=header)
            assert refused.status_code == 401, header
        wrong = await client.get("/jobs", headers={"authorization": "Bearer wrong"})
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        for token in (TOKEN, "other"):
            ok = await client.get("/jobs", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200, token
        lower = await client.get("/openapi.json", headers={"authorization": f"bearer {TOKEN}"})
        assert lower.status_code == 200


async def test_a_refused_request_is_counted_under_its_route_template(world: World) -> None:
    metrics = PrometheusMetrics()
    app = create_app(execute=world.execute, background=BackgroundJobs(world.execute,
                                                                      world.ledger),
                     ledger=world.ledger, events=world.events, metrics=metrics,
                     names=EventNames(), max_event_bytes=4096, probes=[],
                     api_tokens=(TOKEN,))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        assert (await client.get("/jobs/secret-id")).status_code == 401
    text = metrics.exposition().decode() if isinstance(metrics.exposition(), bytes) else \
        str(metrics.exposition())
    assert 'route="/jobs/{job_id:path}",status="401"' in text
    assert "secret-id" not in text


def test_token_check_compares_with_every_token() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")
    check = BearerTokens(app, ("a" * 32, "b" * 8), routes=[])
    assert check.accepts(b"b" * 8) and check.accepts(b"a" * 32)
    assert not check.accepts(b"a" * 31) and not check.accepts(b"")
    with pytest.raises(ValueError):
        BearerTokens(app, (), routes=[])


# CORS_ALLOW_ORIGINS

async def test_cors_preflight_needs_no_token_and_allows_the_api_headers(world: World) -> None:
    async with build(world, api_tokens=(TOKEN,), cors_allow_origins=(ORIGIN,)) as client:
        preflight = await client.options("/jobs/job-1/events", headers={
            "origin": ORIGIN, "access-control-request-method": "GET",
            "access-control-request-headers": "authorization, last-event-id"})
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        allowed = preflight.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "last-event-id", "prefer",
                       "ce-specversion", "ce-id", "ce-source", "ce-type"):
            assert header in allowed
        post = await client.options("/", headers={
            "origin": ORIGIN, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, ce-id, ce-type, prefer"})
        assert post.status_code == 200
        elsewhere = await client.options("/jobs", headers={
            "origin": "https://evil.example", "access-control-request-method": "GET"})
        assert elsewhere.status_code == 400
        assert "access-control-allow-origin" not in elsewhere.headers
        refused = await client.get("/jobs", headers={"origin": ORIGIN})
        assert refused.status_code == 401  # and the browser may read why:
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        ok = await client.get("/jobs", headers={"origin": ORIGIN,
                                                "authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert "location" in ok.headers["access-control-expose-headers"].lower()


async def test_cors_any_origin_and_no_cors_by_default(world: World) -> None:
    async with build(world, cors_allow_origins=("*",)) as client:
        response = await client.get("/health", headers={"origin": "https://a.example"})
        assert response.headers["access-control-allow-origin"] == "*"
    async with build(world) as client:
        response = await client.get("/health", headers={"origin": "https://a.example"})
        assert "access-control-allow-origin" not in response.headers
        preflight = await client.options("/jobs", headers={
            "origin": "https://a.example", "access-control-request-method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers
