"""Hypothesis strategies for inbound CloudEvents: valid jobs, inputs broken in exactly
one known way (so the expected answer is known), and garbage.

A `Case` is transport-neutral: `headers` in the HTTP binding's spelling (binary
mode: `ce-` headers, `content-type` is `datacontenttype`), which is also how the
NATS binding spells them; `job_id` is the job id a reader can still recover from
the message (None when the breakage hits the id itself or the data as a whole).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from agent_executor.domain.job import MAX_ID_LENGTH, MESSAGE_ROLES

EXECUTE_TYPE = "dev.my-platform.agent.execute"
STRUCTURED = "application/cloudevents+json"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
NOT_JSON_MEDIA = ("text/plain", "application/xml", "application/octet-stream", "image/png",
                  "multipart/form-data", "text/csv")


@dataclass(frozen=True)
class Case:
    headers: dict[str, str]
    body: bytes
    what: str  # how it was made, for failure messages
    job_id: str | None = None


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
# What an HTTP client can send as a header value: no leading or trailing blanks (h11,
# under httpx, refuses them before they reach the wire; a server never sees them).
header_text = printable.map(lambda v: v.strip(" \t"))
# Any text a job may hold: everything but NUL and lone surrogates (CONTRACT section 2).
storable = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(storable, max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(storable, max_size=8), inner, max_size=3), max_leaves=8)
non_strings = json_values.filter(lambda v: not isinstance(v, str))
non_objects = json_values.filter(lambda v: not isinstance(v, dict))
# Ids as CONTRACT section 2 allows them: no control character, no outer whitespace.
id_characters = st.characters(blacklist_categories=["Cc", "Cs"])
text_ids = st.text(id_characters, min_size=1, max_size=40).filter(lambda s: s == s.strip())
unique_ids = st.builds(lambda: f"fuzz-{uuid.uuid4().hex[:16]}")


def valid_jobs(ids: st.SearchStrategy[str] = text_ids) -> st.SearchStrategy[dict[str, Any]]:
    message = st.fixed_dictionaries({"role": st.sampled_from(sorted(MESSAGE_ROLES - {"tool"})),
                                     "content": st.text(storable, max_size=30)})
    return st.fixed_dictionaries({
        "job_id": ids, "trace_id": text_ids,
        "agent_definition": st.dictionaries(st.text(storable, max_size=8), json_values,
                                            max_size=3),
        "input_payload": st.fixed_dictionaries({"messages": st.lists(message, min_size=1,
                                                                     max_size=3)})})


def _envelope(data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/fuzz",
            "type": EXECUTE_TYPE, "datacontenttype": "application/json", "data": data}


def _binary_headers() -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": uuid.uuid4().hex, "ce-source": "/fuzz",
            "ce-type": EXECUTE_TYPE, "content-type": "application/json"}


JOB_BREAKAGES = (
    "job_id missing", "job_id not a string", "job_id blank", "job_id too long",
    "trace_id missing", "trace_id not a string", "trace_id blank", "trace_id too long",
    "agent_definition missing", "agent_definition not an object",
    "input_payload missing", "input_payload not an object",
    "messages missing", "messages not a list", "messages empty", "a message not an object",
    "a message role unknown", "a message content not text",
    "job_id control character", "job_id outer whitespace", "trace_id control character",
    "trace_id outer whitespace", "a NUL in content", "a lone surrogate in content",
    "a NUL in the definition", "a lone surrogate in a key", "nested too deep",
    "a tool message unpaired", "a message key unknown", "a tool call without id")
UNPARSABLE_DEPTH = 1_000  # Python's json raises RecursionError about there
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.just("\x7f")
OUTER_SPACE = st.sampled_from([" ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2003"])


@st.composite
def broken_job_data(draw: st.DrawFn, ids: st.SearchStrategy[str] = text_ids
                    ) -> tuple[dict[str, Any], str, str | None]:
    """A JobExecutionEvent with one thing wrong: (data, what, the job_id still readable)."""
    data = draw(valid_jobs(ids))
    messages = data["input_payload"]["messages"]
    what = draw(st.sampled_from(JOB_BREAKAGES))
    field, _, problem = what.partition(" ")
    if problem == "missing" and field in data:
        del data[field]
    elif problem == "not a string":
        data[field] = draw(non_strings)
    elif problem == "blank":
        data[field] = draw(st.text(" \t\n\r", max_size=4))
    elif problem == "too long":
        data[field] = "x" * draw(st.integers(MAX_ID_LENGTH + 1, MAX_ID_LENGTH + 50))
    elif problem == "not an object":
        data[field] = draw(non_objects)
    elif what == "messages missing":
        del data["input_payload"]["messages"]
    elif what == "messages not a list":
        data["input_payload"]["messages"] = draw(
            json_values.filter(lambda v: not isinstance(v, list)))
    elif what == "messages empty":
        messages.clear()
    elif what == "a message not an object":
        messages.append(draw(non_objects))
    elif what == "a message role unknown":
        messages[0]["role"] = draw(json_values.filter(
            lambda v: not (isinstance(v, str) and v in MESSAGE_ROLES)))
    elif what == "a message content not text":
        messages[0]["content"] = draw(json_values.filter(
            lambda v: not isinstance(v, str | list)))
    elif problem == "control character":
        at = draw(st.integers(0, len(data[field])))
        data[field] = data[field][:at] + draw(CONTROL) + data[field][at:]
    elif problem == "outer whitespace":
        space = draw(OUTER_SPACE)
        data[field] = draw(st.sampled_from([space + data[field], data[field] + space]))
    elif what == "a NUL in content":
        messages[0]["content"] += "\x00"
    elif what == "a lone surrogate in content":
        messages[0]["content"] += draw(st.characters(min_codepoint=0xD800,
                                                     max_codepoint=0xDFFF))
    elif what == "a NUL in the definition":
        data["agent_definition"]["name"] = "a\x00b"
    elif what == "a lone surrogate in a key":
        data["agent_definition"]["\udc80"] = 1
    elif what == "nested too deep":
        depth = draw(st.sampled_from([70, 500, 2_000, 10_000]))
        data["input_payload"]["deep"] = nested(depth)
        if depth >= UNPARSABLE_DEPTH:  # past what a JSON reader parses: no id to recover
            field = "job_id"
    elif what == "a tool message unpaired":
        messages.append({"role": "tool", "content": "x", "tool_call_id": "call-1"})
    elif what == "a message key unknown":
        messages[0]["additional_kwargs"] = draw(json_values)
    elif what == "a tool call without id":
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"name": "ls", "args": {}}]})
    job_id = data.get("job_id")
    return data, what, job_id if isinstance(job_id, str) and field != "job_id" else None


@dataclass(frozen=True)
class Nested:
    """`depth` levels of lists, written by `dumps` as text (json.dumps would recurse)."""

    depth: int


def nested(depth: int) -> Nested:
    return Nested(depth)


def dumps(value: Any) -> str:
    """json.dumps, with each `Nested` written out as `[[[...]]]`."""
    holes: list[int] = []

    def mark(obj: Any) -> Any:
        if isinstance(obj, Nested):
            holes.append(obj.depth)
            return f"@@nested{len(holes) - 1}@@"
        raise TypeError(type(obj).__name__)
    text = json.dumps(value, default=mark)
    for i, depth in enumerate(holes):
        text = text.replace(f'"@@nested{i}@@"', "[" * depth + "]" * depth)
    return text


@st.composite
def broken_structured(draw: st.DrawFn, ids: st.SearchStrategy[str] = text_ids) -> Case:
    """A structured-mode event with exactly one thing wrong (envelope or data)."""
    good = draw(valid_jobs(ids))
    event = _envelope(good)
    job_id: str | None = good["job_id"]
    kind = draw(st.sampled_from(["drop", "specversion", "type", "attribute type", "id empty",
                                 "datacontenttype", "data missing", "data not an object",
                                 "data"]))
    if kind == "drop":
        name = draw(st.sampled_from(REQUIRED_ATTRIBUTES))
        del event[name]
        what = f"{name} missing"
    elif kind == "specversion":
        event["specversion"] = draw(json_values.filter(lambda v: v != "1.0"))
        what = f"specversion {event['specversion']!r}"
    elif kind == "type":
        event["type"] = draw(json_values.filter(lambda v: v != EXECUTE_TYPE))
        what = f"type {event['type']!r}"
    elif kind == "attribute type":
        name = draw(st.sampled_from(["id", "source", "type"]))
        event[name] = draw(non_strings.filter(lambda v: v is not None))
        what = f"{name} {event[name]!r}"
    elif kind == "id empty":
        event["id"] = ""
        what = "id empty"
    elif kind == "datacontenttype":
        event["datacontenttype"] = draw(st.sampled_from(NOT_JSON_MEDIA))
        what = f"datacontenttype {event['datacontenttype']}"
    elif kind == "data missing":
        del event["data"]
        job_id, what = None, "data missing"
    elif kind == "data not an object":
        event["data"] = draw(non_objects)
        job_id, what = None, f"data {event['data']!r}"
    else:
        event["data"], what, job_id = draw(broken_job_data(ids))
    headers = draw(st.sampled_from([{"content-type": STRUCTURED},
                                    {"content-type": f"{STRUCTURED}; charset=utf-8"}, {}]))
    if not headers and "specversion" not in event:
        job_id = None  # neither header nor body says it is an envelope
    return Case(headers, dumps(event).encode(), f"structured: {what}", job_id)


@st.composite
def broken_binary(draw: st.DrawFn, ids: st.SearchStrategy[str] = text_ids) -> Case:
    """A binary-mode event (`ce-` headers, body is the data) with one thing wrong."""
    good = draw(valid_jobs(ids))
    headers = _binary_headers()
    body = json.dumps(good).encode()
    job_id: str | None = good["job_id"]
    kind = draw(st.sampled_from(["drop", "specversion", "type", "content-type", "not json",
                                 "data not an object", "data"]))
    if kind == "drop":
        name = draw(st.sampled_from([f"ce-{a}" for a in REQUIRED_ATTRIBUTES]))
        del headers[name]
        what = f"{name} missing"
    elif kind == "specversion":
        headers["ce-specversion"] = draw(header_text.filter(lambda v: v != "1.0"))
        what = f"ce-specversion {headers['ce-specversion']!r}"
    elif kind == "type":
        headers["ce-type"] = draw(header_text.filter(lambda v: v != EXECUTE_TYPE))
        what = f"ce-type {headers['ce-type']!r}"
    elif kind == "content-type":
        headers["content-type"] = draw(st.sampled_from(NOT_JSON_MEDIA))
        what = f"content-type {headers['content-type']}"
    elif kind == "not json":
        body = draw(st.binary(max_size=200).filter(_not_json))
        job_id, what = None, f"body {body!r}"
    elif kind == "data not an object":
        body = json.dumps(draw(non_objects)).encode()
        job_id, what = None, f"body {body!r}"
    else:
        data, what, job_id = draw(broken_job_data(ids))
        body = dumps(data).encode()
    return Case(headers, body, f"binary: {what}", job_id)


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return True
    return False


header_names = st.sampled_from(["content-type", "ce-specversion", "ce-id", "ce-source",
                                "ce-type", "ce-datacontenttype", "ce-time", "ce-subject",
                                "ce-dataschema", "ce-traceparent", "ce-x"])
garbage_bodies = (st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
                  | json_values.map(lambda v: json.dumps(_envelope(v)).encode()))


# Header values mixing text with what the binding's decoding trips on: percent
# escapes (valid, truncated, not UTF-8, overlong), quotes and backslashes.
header_values = header_text | st.lists(
    st.sampled_from(["%", "%2", "%ZZ", "%C0%A0", "%E2%82", "%FF", "%25", "%20", '"', "\\",
                     "1.0", EXECUTE_TYPE, "application/json", STRUCTURED]) | printable,
    max_size=5).map(lambda parts: "".join(parts).strip(" \t"))


@st.composite
def garbage(draw: st.DrawFn) -> Case:
    """Anything at all: random headers (printable values) and a random body."""
    headers = draw(st.dictionaries(header_names, header_values, max_size=6))
    return Case(headers, draw(garbage_bodies), "garbage")


@st.composite
def valid_cases(draw: st.DrawFn, ids: st.SearchStrategy[str] = text_ids) -> Case:
    data = draw(valid_jobs(ids))
    if draw(st.booleans()):
        return Case({"content-type": STRUCTURED}, json.dumps(_envelope(data)).encode(),
                    "valid structured", data["job_id"])
    return Case(_binary_headers(), json.dumps(data).encode(), "valid binary", data["job_id"])


def bad_cases(ids: st.SearchStrategy[str] = text_ids) -> st.SearchStrategy[Case]:
    """Every input here must be refused."""
    return broken_structured(ids) | broken_binary(ids)
