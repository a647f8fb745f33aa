"""The paths of `GET /openapi.json` and the schemas only the HTTP API has (the
envelope of a CloudEvent, errors, the list, health, steering)."""

from __future__ import annotations

from typing import Any

from agent_executor.adapters.http.console import ASSETS
from agent_executor.domain.listing import DEFAULT_LIMIT, JOB_SOURCES, JOB_STATUSES, MAX_LIMIT

_S = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _S + name}


def _json(name: str, description: str, headers: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": _ref(name)}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


_UNAUTHORIZED = _json("Error", "API_TOKENS is set and no valid bearer token was sent.",
                      {"WWW-Authenticate": {"schema": {"type": "string"},
                                            "description": 'Bearer realm="agent-executor"'}})
_UNAVAILABLE = _json("Error", "A dependency of the service failed, or it is shutting down.",
                     {"Retry-After": {"schema": {"type": "integer"}}})
_JOB_ID = {"name": "job_id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
_OPEN: list[dict[str, Any]] = []  # no security: probes and scrapers carry no token
_CE_HEADERS = [
    {"name": f"ce-{name}", "in": "header", "required": False, "schema": {"type": "string"},
     "description": f"Binary mode: the CloudEvent's {name}" + (
         f" ({hint})." if hint else ".")}
    for name, hint in (("specversion", "1.0"), ("id", ""), ("source", ""),
                       ("type", "{CLOUDEVENT_TYPE_PREFIX}.execute"), ("subject", ""),
                       ("time", ""), ("traceparent", "W3C; continues the caller's trace"))]

PATHS: dict[str, Any] = {
    "/": {"post": {
        "operationId": "executeJob",
        "summary": "Run a job sent as a CloudEvent (binary or structured mode)",
        "description": "Runs the job through the same use case as NATS. Without `Prefer: "
                       "respond-async` it answers when the job has finished with the "
                       "structured result CloudEvent; with it, 202 at once. A repeated job "
                       "that has finished is not run again: its recorded result is returned.",
        "parameters": [*_CE_HEADERS,
                       {"name": "Prefer", "in": "header", "required": False,
                        "schema": {"type": "string", "examples": ["respond-async"]}}],
        "requestBody": {
            "required": True,
            "description": "Structured mode: the whole CloudEvent. Binary mode: the job "
                           "(JobExecutionEvent) is the body, the attributes are ce- headers.",
            "content": {"application/cloudevents+json": {"schema": _ref("ExecuteEvent")},
                        "application/json": {"schema": _ref("JobExecutionEvent")}}},
        "responses": {
            "200": {"description": "The job finished (completed or failed).",
                    "content": {"application/cloudevents+json": {
                        "schema": _ref("ResultEvent")}}},
            "202": _json("Accepted", "Accepted (Prefer: respond-async); follow Location.",
                         {"Location": {"schema": {"type": "string"},
                                       "description": "/jobs/{job_id}"}}),
            "400": _error("Not a readable job event (CONTRACT section 2): nothing recorded."),
            "401": _UNAUTHORIZED,
            "409": _error("The same job_id is running under another lease."),
            "413": _error("Larger than MAX_EVENT_BYTES."),
            "422": _error("The job_id is recorded with another definition or input."),
            "503": _UNAVAILABLE}}},
    "/jobs": {"get": {
        "operationId": "listJobs",
        "summary": "Jobs, newest first, in keyset pages",
        "parameters": [
            {"name": "status", "in": "query", "required": False, "explode": True,
             "description": "Repeatable (or comma-separated): any of these statuses.",
             "schema": {"type": "array", "items": {"enum": list(JOB_STATUSES)}}},
            {"name": "source", "in": "query", "required": False, "explode": True,
             "description": "Repeatable (or comma-separated): any of these sources.",
             "schema": {"type": "array", "items": {"enum": list(JOB_SOURCES)}}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "next_cursor of the previous page, unchanged.",
             "schema": {"type": "string"}}],
        "responses": {"200": _json("JobList", "One page."),
                      "400": _error("A parameter is unknown, repeated or invalid; the "
                                    "details name it."),
                      "401": _UNAUTHORIZED, "503": _UNAVAILABLE}}},
    "/jobs/{job_id}": {"get": {
        "operationId": "getJob",
        "summary": "One job: status, attempts, times and its result or error",
        "parameters": [_JOB_ID],
        "responses": {"200": _json("JobRecord", "The job."),
                      "401": _UNAUTHORIZED,
                      "404": _error("No job with this id."), "503": _UNAVAILABLE}}},
    "/jobs/{job_id}/cancel": {"post": {
        "operationId": "cancelJob",
        "summary": "Cancel a pending or running job, wherever it runs",
        "description": "A pending job ends `cancelled` at once and never starts; a running "
                       "one stops at its next step on whichever replica runs it (its "
                       "checkpoints kept) and ends `cancelled` with one result and `end`.",
        "parameters": [_JOB_ID],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"job_id": {"type": "string",
                                      "description": "Optional; must equal the path's."},
                           "reason": {"type": "string", "maxLength": 2000}}}}}},
        "responses": {"202": _json("JobRecord", "The job, after the request."),
                      "400": _error("The body is not a JSON object, or its job_id differs."),
                      "401": _UNAUTHORIZED,
                      "404": _error("No job with this id."),
                      "409": _error("The job already ended."), "503": _UNAVAILABLE}}},
    "/jobs/{job_id}/resume": {"post": {
        "operationId": "resumeJob",
        "summary": "Answer an interrupted job's pending interrupt and let it continue",
        "description": "One decision per pending tool call, in order (GET /jobs/{job_id} "
                       "shows `interrupt.requests`): approve, edit (run the tool with "
                       "`input`) or reject (the tool does not run; the agent is told "
                       "`message`). The job becomes pending and continues its thread on "
                       "whichever replica claims it; its stream's seq continues.",
        "parameters": [_JOB_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["interrupt_id", "decisions"],
            "properties": {
                "job_id": {"type": "string", "description": "Optional; must equal the path's."},
                "interrupt_id": {"type": "string"},
                "decisions": {"type": "array", "items": {"oneOf": [
                    {"type": "object", "required": ["type"], "additionalProperties": False,
                     "properties": {"type": {"const": "approve"}}},
                    {"type": "object", "required": ["type", "input"],
                     "additionalProperties": False,
                     "properties": {"type": {"const": "edit"}, "input": {"type": "object"}}},
                    {"type": "object", "required": ["type"], "additionalProperties": False,
                     "properties": {"type": {"const": "reject"},
                                    "message": {"type": "string"}}}]}}}}}}},
        "responses": {"202": _json("JobRecord", "The job, pending with the decisions."),
                      "400": _error("The body, or a decision, is malformed or of a kind not "
                                    "allowed, or there is not one per pending tool call; "
                                    "details name each."),
                      "401": _UNAUTHORIZED,
                      "404": _error("No job with this id."),
                      "409": _error("The job is not interrupted, or interrupt_id is not the "
                                    "pending interrupt's."), "503": _UNAVAILABLE}}},
    "/jobs/{job_id}/retry": {"post": {
        "operationId": "retryJob",
        "summary": "Run a failed or cancelled job again, as its next run",
        "description": "The job runs again from its last checkpoint (finished steps are not "
                       "repeated, the input is not appended again) as run 2, 3, ...; its "
                       "result's id is `{job_id}:{status}:{run}`.",
        "parameters": [_JOB_ID],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"job_id": {"type": "string",
                                      "description": "Optional; must equal the path's."}}}}}},
        "responses": {"202": _json("JobRecord", "The job, pending as its next run."),
                      "400": _error("The body is not a JSON object, or its job_id differs."),
                      "401": _UNAUTHORIZED,
                      "404": _error("No job with this id."),
                      "409": _error("The job is not failed or cancelled."),
                      "503": _UNAVAILABLE}}},
    "/jobs/{job_id}/events": {"get": {
        "operationId": "followJob",
        "summary": "The job's stream events as server-sent events",
        "description": "Every event so far (of every run), then live ones until the `end` "
                       "of the job's latest run; open while the job is `interrupted`. Each "
                       "SSE event's `id` is the stream event's `seq` and its `data` the "
                       "stream event (StreamEvent) as JSON.",
        "parameters": [_JOB_ID,
                       {"name": "Last-Event-ID", "in": "header", "required": False,
                        "description": "Resume after this seq.",
                        "schema": {"type": "integer", "minimum": 0}},
                       {"name": "after", "in": "query", "required": False,
                        "description": "Resume after this seq (for clients that cannot "
                                       "send the header).",
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": {"description": "text/event-stream of StreamEvent",
                              "content": {"text/event-stream": {
                                  "schema": {"type": "string"},
                                  "x-event-schema": _ref("StreamEvent")}}},
                      "400": _error("Last-Event-ID is not a whole number."),
                      "401": _UNAUTHORIZED,
                      "404": _error("No job with this id."), "503": _UNAVAILABLE}}},
    "/health": {"get": {
        "operationId": "health", "summary": "Liveness: 200 while the process serves",
        "security": _OPEN,
        "responses": {"200": _json("Health", "Serving.")}}},
    "/ready": {"get": {
        "operationId": "ready",
        "summary": "Readiness: PostgreSQL (schema included), Dragonfly and NATS",
        "security": _OPEN,
        "responses": {"200": _json("Ready", "Ready to take jobs."),
                      "503": _json("Ready", "Not ready; the checks say why.")}}},
    "/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text format)",
        "security": _OPEN,
        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/ui": {"get": {
        "operationId": "console",
        "summary": "The console: a web page to watch and steer jobs",
        "description": "Static; holds no job data, so it needs no token. The page asks for "
                       "one when the API answers 401 and sends it as a bearer token.",
        "security": _OPEN,
        "responses": {"200": {"description": "The page.",
                              "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    "/ui/{asset}": {"get": {
        "operationId": "consoleAsset",
        "summary": "The console's script modules and style sheet",
        "security": _OPEN,
        "parameters": [{"name": "asset", "in": "path", "required": True,
                        "schema": {"enum": list(ASSETS)}}],
        "responses": {"200": {"description": "The file.",
                              "content": {"text/javascript": {"schema": {"type": "string"}},
                                          "text/css": {"schema": {"type": "string"}}}},
                      "404": _error("Not a file of the console.")}}},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {
                                  "schema": {"type": "object"}}}},
                      "401": _UNAUTHORIZED}}},
}


def component_schemas() -> dict[str, Any]:
    envelope = {
        "specversion": {"const": "1.0"}, "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1}, "type": {"type": "string"},
        "subject": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string"}, "traceparent": {"type": "string"}}
    return {
        "Error": {"type": "object", "required": ["error", "details"],
                  "properties": {"error": {"type": "string"},
                                 "details": {"type": "array", "items": {"type": "string"}}}},
        "ExecuteEvent": {
            "type": "object", "description": "A structured {prefix}.execute CloudEvent.",
            "required": ["specversion", "id", "source", "type", "data"],
            "properties": {**envelope, "data": _ref("JobExecutionEvent")}},
        "ResultEvent": {
            "type": "object", "description": "The structured result CloudEvent: id "
                                             "{job_id}:{status}, type {prefix}.{status}.",
            "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
            "properties": {**envelope, "data": _ref("JobResultData")}},
        "Accepted": {"type": "object", "required": ["job_id", "status", "location"],
                     "properties": {"job_id": {"type": "string"},
                                    "status": {"type": "string"},
                                    "location": {"type": "string"}}},
        "JobList": {"type": "object", "required": ["jobs", "next_cursor"],
                    "properties": {
                        "jobs": {"type": "array", "items": _ref("JobRecord"),
                                 "description": "Newest first; without result, error "
                                                "and interrupt."},
                        "next_cursor": {"type": ["string", "null"],
                                        "description": "null on the last page."}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "checks"],
                  "properties": {
                      "status": {"enum": ["ready", "not_ready"]},
                      "checks": {"type": "object", "additionalProperties": {
                          "type": "object", "required": ["ok"],
                          "properties": {"ok": {"type": "boolean"},
                                         "embedded": {"type": "boolean"},
                                         "detail": {"type": "string"}}}}}},
    }
