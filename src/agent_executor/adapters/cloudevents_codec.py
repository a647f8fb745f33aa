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
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import (
    MAX_JSON_DEPTH,
    Job,
    json_problems,
    json_text_is_clean,
    nesting_within,
    parse_job,
    printable,
)
from agent_executor.domain.result import JobResult

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
STRUCTURED_MEDIA_TYPE = "application/cloudevents"
_FORMAT = JSONFormat()
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-.]+\+)?json(\s*;.*)?$", re.I)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
# W3C trace context, version 00 (an invalid one is ignored: the job still runs)
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUIRED = ("specversion", "id", "source", "type")
_CHARSET = re.compile(r";\s*charset\s*=\s*([^;]*)", re.I)
# Printable ASCII except space, double-quote and percent is left as it is.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


@dataclass(frozen=True)
class EventNames:
    """The attributes of events this service reads and writes (CONTRACT section 1)."""

    source: str = "agent-executor"
    type_prefix: str = "dev.my-platform.agent"

    @property
    def execute_type(self) -> str:
        return f"{self.type_prefix}.execute"


def read_job(headers: Mapping[str, str], body: bytes, names: EventNames) -> Job:
    """Decode a job CloudEvent in binary or structured mode; raise `InvalidJob`.

    The one reader of both transports: the same headers and bytes get the same
    verdict over HTTP and NATS (the NATS codec only respells its headers)."""
    event = read_event(headers, body)
    problems: list[str] = []
    if event.get_type() != names.execute_type:
        problems.append(f"type: expected {names.execute_type!r}, got "
                        f"{printable(str(event.get_type()), 80)!r}")
    content_type = event.get_datacontenttype()
    if content_type is not None and not _JSON_TYPE.match(content_type):
        problems.append(f"datacontenttype: expected application/json, got "
                        f"{printable(content_type, 80)!r}")
    if problems:
        raise InvalidJob("not a job event: " + "; ".join(problems), problems)
    data = event.get_data()
    if isinstance(data, bytes):  # binary mode with a non-JSON content type
        data = load_json(data, "data")
    if data is None:
        raise InvalidJob("the event has no data (a JobExecutionEvent object is required)",
                         ["data: required"])
    job = parse_job(data, text_checked=True)  # every JSON text read here was checked
    inbound = event.get_attributes().get("traceparent")
    if isinstance(inbound, str) and _TRACEPARENT.match(inbound.strip().lower()):
        job = replace(job, traceparent=inbound.strip().lower())
    return job


def read_event(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """Headers + body to a CloudEvent, detecting the content mode as the bindings say:
    a `application/cloudevents` content type is structured mode; else `ce-` headers
    are binary mode; else a JSON object holding `specversion` is structured."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "")
    try:
        if content_type.strip().lower().startswith(STRUCTURED_MEDIA_TYPE):
            if not content_type.strip().lower().startswith(STRUCTURED_CONTENT_TYPE):
                raise InvalidJob("unsupported event format", [
                    f"content-type: expected {STRUCTURED_CONTENT_TYPE}, got "
                    f"{printable(content_type, 80)!r}"])
            return _structured(lowered, body)
        if any(k.startswith("ce-") for k in lowered):
            return _binary(lowered, body)
        if _looks_structured(body):
            return _structured(lowered, body)
    except CloudEventValidationError as exc:
        details = [f"{attr}: {errors[0]}" for attr, errors in exc.errors.items() if errors]
        raise InvalidJob("invalid CloudEvent: " + "; ".join(details), details) from exc
    except (BaseCloudEventException, ValueError, TypeError, AttributeError, KeyError) as exc:
        detail = printable(str(exc), 200)
        raise InvalidJob(f"invalid CloudEvent: {detail}", [detail]) from exc
    raise InvalidJob(
        "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers, "
        f"the job as the body) or structured mode (Content-Type: {STRUCTURED_CONTENT_TYPE})",
        ["headers: no ce- attributes and no structured CloudEvent body"])


def _structured(lowered: dict[str, str], body: bytes) -> BaseCloudEvent:
    _require_utf8_charset(lowered.get("content-type", ""), "content-type")
    envelope = load_json(body, "body", nesting=False)  # parse_job walks `data`
    if not isinstance(envelope, dict):
        raise InvalidJob("a structured CloudEvent must be a JSON object",
                         ["body: expected a JSON object"])
    _require_attributes([a for a in _REQUIRED if a not in envelope])
    if envelope.get("specversion") != "1.0":
        got = envelope.get("specversion")
        raise InvalidJob("unsupported CloudEvents specversion",
                         [f"specversion: expected '1.0', got {printable(repr(got), 40)}"])
    attributes = {k: v for k, v in envelope.items() if k != "data"}
    if not nesting_within(attributes):
        raise InvalidJob("body is nested too deep", [
            f"body: nested deeper than {MAX_JSON_DEPTH} levels"])
    _require_attribute_text({k: v for k, v in attributes.items()
                             if k != "data_base64" and isinstance(v, str)})
    # The SDK reads the attributes (without `data`: parsed once is enough).
    event = from_structured(HTTPMessage(lowered, json.dumps(attributes).encode()), _FORMAT,
                            CloudEvent)
    if "data" not in envelope:
        return event
    return CloudEvent(dict(event.get_attributes()), envelope["data"])


def _binary(lowered: dict[str, str], body: bytes) -> BaseCloudEvent:
    _require_attributes([f"ce-{a}" for a in _REQUIRED if f"ce-{a}" not in lowered])
    decoded: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in lowered.items():
        if name.startswith("ce-"):
            try:
                decoded[name] = decode_header_value(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if problems:
        raise InvalidJob("invalid CloudEvent headers: " + "; ".join(problems), problems)
    _require_attribute_text(decoded)
    content_type = lowered.get("content-type")
    if content_type is not None:
        _require_utf8_charset(content_type, "content-type")
    canonical = {name: encode_header_value(value) for name, value in decoded.items()}
    if content_type is not None:
        canonical["content-type"] = content_type
    if not body or (content_type is not None and not _JSON_TYPE.match(content_type)):
        return from_binary(HTTPMessage(canonical, body), _FORMAT, CloudEvent)
    data = load_json(body, "data", nesting=False)  # parsed once; parse_job walks it
    event = from_binary(HTTPMessage(canonical, b""), _FORMAT, CloudEvent)
    return CloudEvent(dict(event.get_attributes()), data)


def load_json(raw: bytes, where: str, *, nesting: bool = True) -> Any:
    """JSON that is UTF-8 (strictly: no other encoding, no BOM), nested at most
    `MAX_JSON_DEPTH` deep, with no NUL or lone surrogate in any string; else
    `InvalidJob` naming `where`. Never raises anything else (no RecursionError).
    `nesting=False` leaves the nesting (below what `json` itself refuses) to a
    later `parse_job`, which walks the job anyway."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJob(f"{where} is not UTF-8 (byte {exc.start})",
                         [f"{where}: not valid UTF-8 at byte {exc.start}"]) from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise InvalidJob(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels",
                         [f"{where}: nested deeper than {MAX_JSON_DEPTH} levels"]) from exc
    except ValueError as exc:
        raise InvalidJob(f"{where} is not valid JSON: {exc}",
                         [f"{where}: not valid JSON"]) from exc
    if json_text_is_clean(text) and (not nesting or nesting_within(value)):
        return value
    problems = json_problems(value, where)  # decides a false alarm (an escaped pair)
    if not problems:
        return value
    raise InvalidJob(f"{where} cannot be read: " + "; ".join(problems), problems)


def encode_header_value(value: str) -> str:
    """Percent-encode space, `"`, `%` and everything outside printable ASCII (as UTF-8)."""
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def decode_header_value(raw: str) -> str:
    """Undo RFC 7230 double-quoting, then one round of percent-decoding.

    Raises `ValueError` for a raw character outside printable ASCII (the bindings
    require those percent-encoded; HTTP and NATS clients decode raw bytes
    differently, so accepting them would give one message two verdicts) and for
    percent-encoded bytes that are not valid UTF-8 (an overlong `%C0%A0` included).
    """
    value = raw.strip()
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        raise ValueError(f"holds {printable(bad)!r} (U+{ord(bad):04X}) not percent-encoded")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _unquote_string(value[1:-1])
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"percent-encoded value is not valid UTF-8: "
                         f"{printable(raw, 80)!r}") from exc


def result_event(result: JobResult, names: EventNames, *,
                 truncated: bool = False) -> dict[str, Any]:
    """The structured result CloudEvent (CONTRACT section 6), as a JSON object."""
    status_type = f"{names.type_prefix}.{result.status}"
    event = CloudEvent({
        "id": result.event_id, "source": names.source, "type": status_type,
        "subject": result.job_id, "time": result.finished_at,
        "datacontenttype": "application/json",
        "traceparent": result.traceparent or traceparent(result.trace_id, result.job_id),
    }, result.to_data(truncated=truncated))
    decoded: dict[str, Any] = json.loads(_FORMAT.write(event))
    return decoded


def result_event_bytes(result: JobResult, names: EventNames, *,
                       truncated: bool = False) -> bytes:
    return json.dumps(result_event(result, names, truncated=truncated),
                      separators=(",", ":")).encode()


def traceparent(trace_id: str, job_id: str) -> str:
    """W3C traceparent of a result no job span produced (tracing off, or a job ended
    without running): the job's trace id when it is one, else a stable hash of it."""
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


def _require_attribute_text(attributes: Mapping[str, str]) -> None:
    """CloudEvents strings hold no control characters (U+0000-U+001F, U+007F-U+009F)."""
    problems = [f"{name}: holds a control character (U+{ord(bad):04X})"
                for name, value in attributes.items()
                if (bad := next((c for c in value if c <= "\x1f" or "\x7f" <= c <= "\x9f"),
                                None)) is not None]
    if problems:
        raise InvalidJob("invalid CloudEvent: " + "; ".join(problems), problems)


def _require_utf8_charset(content_type: str, where: str) -> None:
    charset = _CHARSET.search(content_type)
    if charset and charset.group(1).strip("\"'").lower() not in ("utf-8", "utf8"):
        raise InvalidJob("the event is not UTF-8", [
            f"{where}: charset {printable(charset.group(1), 40)!r}; only utf-8 is read"])


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
