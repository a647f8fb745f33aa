"""The HTTP adapter: CloudEvent intake, job status, live events, health, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_executor.adapters.cloudevents_codec import EventNames, read_job, result_event
from agent_executor.adapters.http.auth import OPEN_PATHS, access_middleware
from agent_executor.adapters.http.console import CONSOLE_PATHS, console_routes
from agent_executor.adapters.http.listing import job_query
from agent_executor.adapters.http.openapi import openapi_document
from agent_executor.adapters.http.sse import sse_stream
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.probes import check_within
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import (
    AgentExecutorError,
    DependencyUnavailable,
    InvalidJob,
    InvalidRequest,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    LeaseLost,
    WrongJobState,
)
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.outbox import replay_finished
from agent_executor.domain.result import JobResult
from agent_executor.ports.events import EventStream
from agent_executor.ports.health import ReadinessProbe
from agent_executor.ports.ledger import JobLedger

logger = logging.getLogger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"
DISCARD_LIMIT_FACTOR = 16

# The one error-to-status table.
ERROR_STATUS: dict[type[AgentExecutorError], int] = {
    InvalidJob: 400,
    InvalidRequest: 400,
    JobNotFound: 404,
    JobConflict: 409,
    JobFinished: 409,
    JobMismatch: 422,
    WrongJobState: 409,
    LeaseLost: 409,
    DependencyUnavailable: 503,
}


class PayloadTooLarge(Exception):
    pass


def create_app(*, execute: ExecuteJob, background: BackgroundJobs, ledger: JobLedger,
               events: EventStream, probes: Sequence[ReadinessProbe],
               metrics: PrometheusMetrics, names: EventNames, max_event_bytes: int,
               probe_timeout_seconds: float = 2.0, cors_allow_origins: Collection[str] = (),
               api_tokens: Collection[str] = ()) -> Starlette:
    """Build the Starlette app from what bootstrap hands over."""

    async def post_job(request: Request) -> Response:
        body = await _read_body(request, max_event_bytes)
        job = read_job(request.headers, body, names)
        if "respond-async" in request.headers.get("prefer", "").lower():
            record = await execute.claim(job, "http")
            if record.settled is not None:
                return _result_response(record.settled, names)
            background.start(job, record)
            return JSONResponse({"job_id": job.job_id, "status": "running",
                                 "location": f"/jobs/{job.job_id}"}, status_code=202,
                                headers={"Location": f"/jobs/{job.job_id}",
                                         "Preference-Applied": "respond-async"})
        return _result_response(await execute.execute(job, "http"), names)

    async def get_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        record = await ledger.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return JSONResponse(record.to_data())

    async def job_events(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        record = await ledger.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        after = _last_event_id(request)
        # A live follower is subscribed before the answer starts, so a stream that
        # cannot be read is a 503, never an empty 200. It follows the run the ledger
        # names now (an interrupted one included: no `end` until it resumes and ends);
        # a retry while it follows does not move it on: it stops at that run's `end`.
        stream = (replay_finished(events, record.result, after)
                  if record.result is not None and record.finished
                  else await events.subscribe(job_id, after, live=True,
                                              until_run=record.run))
        return StreamingResponse(sse_stream(stream), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def cancel_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        body = await _steering_body(request, job_id, max_event_bytes)
        reason = body.get("reason", "cancelled on request")
        if not isinstance(reason, str) or len(reason) > 2000:
            raise InvalidJob("reason must be a string of at most 2000 characters",
                             ["reason: expected a string"])
        record = await execute.cancel(job_id, reason)
        return JSONResponse(record.to_data(), status_code=202)

    async def resume_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        body = await _steering_body(request, job_id, max_event_bytes)
        interrupt_id = body.get("interrupt_id")
        if not isinstance(interrupt_id, str) or not interrupt_id:
            raise InvalidRequest("interrupt_id is required: the id of the pending interrupt "
                                 "(GET /jobs/{job_id} shows it)",
                                 ["interrupt_id: expected a string"])
        if "decisions" not in body:
            raise InvalidRequest("decisions is required: one per pending tool call",
                                 ["decisions: missing"])
        record = await execute.resume(job_id, interrupt_id, body["decisions"])
        return JSONResponse(record.to_data(), status_code=202)

    async def retry_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await _steering_body(request, job_id, max_event_bytes)
        record = await execute.retry(job_id)
        return JSONResponse(record.to_data(), status_code=202)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        results = await asyncio.gather(*(check_within(p, probe_timeout_seconds)
                                         for p in probes))
        checks = {probe.name: result.to_data()
                  for probe, result in zip(probes, results, strict=True)}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    async def metrics_route(_: Request) -> Response:
        return Response(metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_jobs(request: Request) -> Response:
        page = await ledger.list_jobs(job_query(request.query_params))
        return JSONResponse(page.to_data())

    async def openapi(_: Request) -> Response:
        return Response(openapi_document(), media_type="application/json")

    routes = [
        Route("/", post_job, methods=["POST"]),
        Route("/jobs", list_jobs, methods=["GET"]),
        Route("/jobs/", list_jobs, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/jobs/{job_id:path}/events", job_events, methods=["GET"]),
        Route("/jobs/{job_id:path}/cancel", cancel_job, methods=["POST"]),
        Route("/jobs/{job_id:path}/resume", resume_job, methods=["POST"]),
        Route("/jobs/{job_id:path}/retry", retry_job, methods=["POST"]),
        Route("/jobs/{job_id:path}", get_job, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        *console_routes(),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        AgentExecutorError: _domain_error,
        PayloadTooLarge: _too_large(max_event_bytes),
        HTTPException: _http_error,
        Exception: _internal_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(RequestMetrics, metrics=metrics),
                                 *access_middleware(cors_allow_origins=cors_allow_origins,
                                                    api_tokens=api_tokens, routes=routes,
                                                    open_paths=OPEN_PATHS | CONSOLE_PATHS)])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or `PayloadTooLarge` past `limit`. An oversized body is still read
    (and dropped) up to a bound, so the client, still sending, gets the 413."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _discard(request, size, DISCARD_LIMIT_FACTOR * limit)
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _discard(request: Request, size: int, bound: int) -> None:
    async for chunk in request.stream():
        size += len(chunk)
        if size > bound:
            return


async def _steering_body(request: Request, job_id: str, limit: int) -> dict[str, Any]:
    """The JSON body of a steering route (CONTRACT section 2a): optional for cancel and
    retry; a `job_id` in it must be the path's."""
    raw = await _read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJob("the body is not valid JSON", [f"body: {exc}"]) from exc
    if not isinstance(body, dict):
        raise InvalidJob("the body must be a JSON object", ["body: expected an object"])
    if "job_id" in body and body["job_id"] != job_id:
        raise InvalidJob("job_id in the body differs from the path's",
                         [f"job_id: {body['job_id']!r} is not {job_id!r}"])
    return body


def _result_response(result: JobResult, names: EventNames) -> Response:
    return Response(json.dumps(result_event(result, names)), media_type=CLOUDEVENTS_JSON)


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.strip().isdigit():
        raise InvalidJob("Last-Event-ID must be a stream seq (a whole number)",
                         [f"Last-Event-ID: {raw!r} is not a whole number"])
    return int(raw)


async def _domain_error(_: Request, exc: Exception) -> Response:
    status = next((code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls)), 500)
    body: dict[str, Any] = {"error": str(exc), "details": getattr(exc, "details", [])}
    headers = {"Retry-After": "5"} if status == 503 else None
    if status == 500:
        logger.error("unmapped domain error: %r", exc)
    return JSONResponse(body, status_code=status, headers=headers)


def _too_large(limit: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(_: Request, __: Exception) -> Response:
        return JSONResponse({"error": f"event larger than MAX_EVENT_BYTES ({limit} bytes)",
                             "details": []}, status_code=413)
    return handler


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail, "details": []}, status_code=exc.status_code,
                        headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path,
                     exc_info=exc)
    return JSONResponse({"error": "internal error", "details": []}, status_code=500)


class RequestMetrics:
    """Counts every answered request by method, route template and status.

    Labels never take a value a client chose freely (CONTRACT section 8): `method`
    is one the routes serve (read from the app's routes on the first request, plus
    OPTIONS for CORS preflights) or `other`; `route` the matched template or
    `unmatched`."""

    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._methods: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = self._method(scope)
            self.metrics.http_requests_total.labels(
                method=method, route=template, status=str(status)).inc()
            self.metrics.http_request_duration_seconds.labels(
                method=method, route=template).observe(time.perf_counter() - started)

    def _method(self, scope: Scope) -> str:
        if self._methods is None:
            routes = getattr(scope.get("app"), "routes", ())
            served = {m for r in routes for m in (getattr(r, "methods", None) or ())}
            self._methods = frozenset(served | {"OPTIONS"})
        method = str(scope.get("method", ""))
        return method if method in self._methods else "other"
