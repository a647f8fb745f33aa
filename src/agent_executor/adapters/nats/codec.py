"""The CloudEvents NATS protocol binding (spec v1.0.3), in and out.

Inbound, the content mode is told by the `Content-Type` header: one starting
with `application/cloudevents` is structured mode; otherwise `ce-` headers mean
binary mode (every attribute in a `ce-` header, `datacontenttype` included,
values percent-encoded, possibly double-quoted); a JSON body holding
`specversion` without either is taken as structured too (CONTRACT section 5).
The headers are translated to what the shared HTTP-binding reader expects, so
the job is read by `cloudevents_codec.read_job` like an HTTP one.

Outbound, results are structured mode with `Nats-Msg-Id: {job_id}:{status}`,
so JetStream drops a result published twice within the duplicate window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from cloudevents.core.base import BaseCloudEvent

from agent_executor.adapters.cloudevents_codec import (
    STRUCTURED_CONTENT_TYPE,
    STRUCTURED_MEDIA_TYPE,
    EventNames,
    decode_header_value,
    encode_header_value,
    read_event,
    read_job,
    result_event_bytes,
)
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import Job, id_problem
from agent_executor.domain.result import JobResult

CE_PREFIX = "ce-"
MSG_ID_HEADER = "Nats-Msg-Id"


@dataclass(frozen=True)
class NatsMessage:
    subject: str
    headers: dict[str, str]
    body: bytes


def is_structured(headers: Mapping[str, str], body: bytes) -> bool:
    lowered = _lower(headers)
    if lowered.get("content-type", "").strip().lower().startswith(STRUCTURED_MEDIA_TYPE):
        return True
    if any(name.startswith(CE_PREFIX) for name in lowered):
        return False
    return body[:4096].lstrip().startswith(b"{") and b'"specversion"' in body


def read_nats_job(headers: Mapping[str, str] | None, body: bytes, names: EventNames) -> Job:
    """A job from a NATS message in either mode; raises `InvalidJob`."""
    return read_job(_as_http(headers or {}, body), body, names)


def read_nats_event(headers: Mapping[str, str] | None, body: bytes) -> BaseCloudEvent:
    """Any CloudEvent (a steering one) from a NATS message in either mode; raises
    `InvalidJob`."""
    return read_event(_as_http(headers or {}, body), body)


def _as_http(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    if is_structured(headers, body):
        return {"content-type": _lower(headers).get("content-type") or STRUCTURED_CONTENT_TYPE}
    return http_binding_headers(headers)


def http_binding_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Binary-mode NATS headers as the HTTP binding spells them (`datacontenttype`
    as `content-type`, values percent-encoded the canonical way)."""
    lowered = _lower(headers)
    http: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in lowered.items():
        if not name.startswith(CE_PREFIX):
            continue
        try:
            value = decode_header_value(raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if name == "ce-datacontenttype":
            http["content-type"] = value
        else:
            http[name] = encode_header_value(value)
    if problems:
        raise InvalidJob("invalid CloudEvent headers: " + "; ".join(problems), problems)
    if "content-type" not in http and "content-type" in lowered:
        http["content-type"] = lowered["content-type"]  # lenient: the HTTP binding's spelling
    return http


def binary_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """CloudEvent attributes as binary-mode NATS headers (what a producer sends)."""
    return {f"{CE_PREFIX}{name}": encode_header_value(value) for name, value in attributes.items()}


def job_identity(headers: Mapping[str, str] | None, body: bytes) -> tuple[str, str] | None:
    """`(job_id, trace_id)` of a message that is not a valid job, where they can be read
    (the trace id may be empty); None when no usable `job_id` is there. Never raises:
    it runs on messages already known to be unreadable."""
    try:
        decoded = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    data = decoded.get("data") if is_structured(headers or {}, body) and isinstance(
        decoded, dict) else decoded
    if not isinstance(data, dict):
        return None
    job_id, trace_id = data.get("job_id"), data.get("trace_id")
    if id_problem(job_id) is not None:
        return None
    if id_problem(trace_id) is not None:
        trace_id = ""
    assert isinstance(job_id, str) and isinstance(trace_id, str)
    return job_id, trace_id


def result_message(result: JobResult, names: EventNames, status_prefix: str, *,
                   truncated: bool = False) -> NatsMessage:
    """The structured result event on `{prefix}.{status}`, de-duplicated by its id;
    `truncated`: without the conversation and files (too large for the bus)."""
    return NatsMessage(
        subject=f"{status_prefix}.{result.status}",
        headers={"Content-Type": STRUCTURED_CONTENT_TYPE, MSG_ID_HEADER: result.event_id},
        body=result_event_bytes(result, names, truncated=truncated))


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
