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
from urllib.parse import quote, unquote_to_bytes

from cloudevents.core.base import BaseCloudEvent

from agent_executor.adapters.cloudevents_codec import (
    STRUCTURED_CONTENT_TYPE,
    EventNames,
    read_event,
    read_job,
    result_event_bytes,
)
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import MAX_ID_LENGTH, Job
from agent_executor.domain.result import JobResult

CE_PREFIX = "ce-"
STRUCTURED_MEDIA_TYPE = "application/cloudevents"
MSG_ID_HEADER = "Nats-Msg-Id"
# Printable ASCII except space, double-quote and percent is left as it is.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


@dataclass(frozen=True)
class NatsMessage:
    subject: str
    headers: dict[str, str]
    body: bytes


def encode_header_value(value: str) -> str:
    """Percent-encode space, `"`, `%` and everything outside printable ASCII (as UTF-8)."""
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def decode_header_value(raw: str) -> str:
    """Undo RFC 7230 double-quoting, then one round of percent-decoding.

    Raises `ValueError` for percent-encoded bytes that are not valid UTF-8
    (an overlong `%C0%A0` included), as the binding requires.
    """
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _unquote_string(value[1:-1])
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"percent-encoded value is not valid UTF-8: {raw!r}") from exc


def is_structured(headers: Mapping[str, str], body: bytes) -> bool:
    lowered = _lower(headers)
    if lowered.get("content-type", "").strip().lower().startswith(STRUCTURED_MEDIA_TYPE):
        return True
    if any(name.startswith(CE_PREFIX) for name in lowered):
        return False
    return body[:4096].lstrip().startswith(b"{") and b'"specversion"' in body


def read_nats_job(headers: Mapping[str, str] | None, body: bytes, names: EventNames) -> Job:
    """A job from a NATS message in either mode; raises `InvalidJob`."""
    headers = headers or {}
    if is_structured(headers, body):
        return read_job({"content-type": STRUCTURED_CONTENT_TYPE}, body, names)
    return read_job(http_binding_headers(headers), body, names)


def read_nats_event(headers: Mapping[str, str] | None, body: bytes) -> BaseCloudEvent:
    """Any CloudEvent from a NATS message in either mode; raises `InvalidJob`."""
    headers = headers or {}
    if is_structured(headers, body):
        return read_event({"content-type": STRUCTURED_CONTENT_TYPE}, body)
    return read_event(http_binding_headers(headers), body)


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
    (the trace id may be empty); None when no usable `job_id` is there."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    data = decoded.get("data") if is_structured(headers or {}, body) and isinstance(
        decoded, dict) else decoded
    if not isinstance(data, dict):
        return None
    job_id, trace_id = data.get("job_id"), data.get("trace_id")
    if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > MAX_ID_LENGTH:
        return None
    if not isinstance(trace_id, str) or len(trace_id) > MAX_ID_LENGTH:
        trace_id = ""
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


def _unquote_string(inner: str) -> str:
    out: list[str] = []
    escaped = False
    for char in inner:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)
