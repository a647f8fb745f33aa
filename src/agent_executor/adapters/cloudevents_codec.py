"""CloudEvents in and out, shared by the HTTP and NATS adapters.

Inbound: headers + body (either content mode) to a `Job`, or `InvalidJob` saying
what is wrong. Outbound: a `JobResult` to the structured result event of
CONTRACT section 6. Both go through the `cloudevents` SDK; the NATS binding
mirrors the HTTP one (`ce-` headers, percent-encoded values), so one reader
serves both.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import Job, parse_job
from agent_executor.domain.result import JobResult

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_FORMAT = JSONFormat()
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-.]+\+)?json(\s*;.*)?$", re.I)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class EventNames:
    """The attributes of events this service reads and writes (CONTRACT section 1)."""

    source: str = "agent-executor"
    type_prefix: str = "dev.my-platform.agent"

    @property
    def execute_type(self) -> str:
        return f"{self.type_prefix}.execute"


def read_job(headers: Mapping[str, str], body: bytes, names: EventNames) -> Job:
    """Decode a job CloudEvent in binary or structured mode; raise `InvalidJob`."""
    event = read_event(headers, body)
    problems: list[str] = []
    if event.get_type() != names.execute_type:
        problems.append(f"type: expected {names.execute_type!r}, got {event.get_type()!r}")
    content_type = event.get_datacontenttype()
    if content_type is not None and not _JSON_TYPE.match(content_type):
        problems.append(f"datacontenttype: expected application/json, got {content_type!r}")
    if problems:
        raise InvalidJob("not a job event: " + "; ".join(problems), problems)
    data = event.get_data()
    if isinstance(data, bytes):  # binary mode with a non-JSON content type
        data = _json(data, "data")
    if data is None:
        raise InvalidJob("the event has no data (a JobExecutionEvent object is required)",
                         ["data: required"])
    return parse_job(data)


def read_event(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """Headers + body to a CloudEvent, detecting the content mode."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "")
    try:
        if any(k.startswith("ce-") for k in lowered):
            _require_attributes([f"ce-{a}" for a in _REQUIRED if f"ce-{a}" not in lowered])
            return from_binary(HTTPMessage(lowered, body), _FORMAT, CloudEvent)
        if content_type.lower().startswith(STRUCTURED_CONTENT_TYPE) or _looks_structured(body):
            envelope = _json(body, "body")
            if not isinstance(envelope, dict):
                raise InvalidJob("a structured CloudEvent must be a JSON object",
                                 ["body: expected a JSON object"])
            _require_attributes([a for a in _REQUIRED if a not in envelope])
            if envelope.get("specversion") != "1.0":
                got = envelope.get("specversion")
                raise InvalidJob("unsupported CloudEvents specversion",
                                 [f"specversion: expected '1.0', got {got!r}"])
            return from_structured(HTTPMessage(lowered, body), _FORMAT, CloudEvent)
    except CloudEventValidationError as exc:
        details = [f"{attr}: {errors[0]}" for attr, errors in exc.errors.items() if errors]
        raise InvalidJob("invalid CloudEvent: " + "; ".join(details), details) from exc
    except (BaseCloudEventException, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidJob(f"invalid CloudEvent: {exc}", [str(exc)]) from exc
    raise InvalidJob(
        "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers, "
        f"the job as the body) or structured mode (Content-Type: {STRUCTURED_CONTENT_TYPE})",
        ["headers: no ce- attributes and no structured CloudEvent body"])


def result_event(result: JobResult, names: EventNames, *,
                 truncated: bool = False) -> dict[str, Any]:
    """The structured result CloudEvent (CONTRACT section 6), as a JSON object."""
    status_type = f"{names.type_prefix}.{result.status}"
    event = CloudEvent({
        "id": result.event_id, "source": names.source, "type": status_type,
        "subject": result.job_id, "time": result.finished_at,
        "datacontenttype": "application/json",
        "traceparent": traceparent(result.trace_id, result.job_id),
    }, result.to_data(truncated=truncated))
    decoded: dict[str, Any] = json.loads(_FORMAT.write(event))
    return decoded


def result_event_bytes(result: JobResult, names: EventNames, *,
                       truncated: bool = False) -> bytes:
    return json.dumps(result_event(result, names, truncated=truncated),
                      separators=(",", ":")).encode()


def traceparent(trace_id: str, job_id: str) -> str:
    """W3C traceparent: the job's trace id when it is one, else a stable hash of it."""
    trace = trace_id.lower().replace("-", "")
    if not _HEX32.match(trace) or trace == "0" * 32:
        trace = hashlib.sha256(trace_id.encode()).hexdigest()[:32]
    span = hashlib.sha256(f"{trace_id}/{job_id}".encode()).hexdigest()[:16]
    return f"00-{trace}-{span}-01"


def _require_attributes(missing: list[str]) -> None:
    """The SDK's CloudEvent, made for producing events, fills in a missing `id` and
    `specversion`; an inbound event without them is refused instead."""
    if missing:
        raise InvalidJob("invalid CloudEvent: missing required attribute(s): "
                         + ", ".join(missing), [f"{name}: required" for name in missing])


def _looks_structured(body: bytes) -> bool:
    head = body[:4096].lstrip()
    return head.startswith(b"{") and b'"specversion"' in body


def _json(raw: bytes | str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJob(f"{where} is not valid JSON: {exc}", [f"{where}: not valid JSON"]) from exc
