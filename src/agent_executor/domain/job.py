"""The job: what a producer asks the service to run (CONTRACT section 2).

`parse_job` is the domain boundary: whatever transport a job came by, what it
lets through is safe to record (no NUL, no lone surrogate, bounded nesting) and
safe to hand the runtime (ids that cannot collide after header normalisation,
messages LangChain accepts: see `domain.messages`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.messages import MESSAGE_ROLES, message_problems
from agent_executor.domain.usage import Limits, limits_problems, read_limits

__all__ = ["MAX_ID_LENGTH", "MAX_JSON_DEPTH", "MESSAGE_ROLES", "Job", "id_problem",
           "json_problems", "json_text_is_clean", "kind", "nesting_within", "parse_job",
           "printable"]

MAX_ID_LENGTH = 200
MAX_JSON_DEPTH = 64  # levels of arrays and objects, the document itself being level 1
MAX_REPORTED = 20  # problems named in one error; the rest are counted
_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F])
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")
_is_dict = dict.__instancecheck__
_is_list = list.__instancecheck__


@dataclass(frozen=True)
class Job:
    job_id: str
    trace_id: str
    agent_definition: Mapping[str, Any] = field(repr=False)
    input_payload: Mapping[str, Any] = field(repr=False)
    limits: Limits = Limits()
    traceparent: str | None = None  # the inbound CloudEvent's, when it had a valid one

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        return list(self.input_payload.get("messages", []))

    def to_data(self) -> dict[str, Any]:
        """The JobExecutionEvent, as it arrived (stored so a job can be resumed), and
        the inbound `traceparent`."""
        data = {"job_id": self.job_id, "trace_id": self.trace_id,
                "agent_definition": dict(self.agent_definition),
                "input_payload": dict(self.input_payload)}
        if not self.limits.unlimited:
            data["limits"] = self.limits.to_data()
        if self.traceparent is not None:
            data["traceparent"] = self.traceparent
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Job:
        """What `to_data` stored."""
        traceparent = data.get("traceparent")
        return cls(job_id=data["job_id"], trace_id=data["trace_id"],
                   agent_definition=data["agent_definition"],
                   input_payload=data["input_payload"], limits=read_limits(data.get("limits")),
                   traceparent=traceparent if isinstance(traceparent, str) else None)


def parse_job(data: object, *, text_checked: bool = False) -> Job:
    """Read a JobExecutionEvent; raise `InvalidJob` listing every problem found.

    Only what makes the event unreadable is checked here; the agent definition's
    meaning is checked by the runtime, so a bad definition is a job that fails.
    `text_checked`: `data` was decoded from JSON text that `json_text_is_clean`
    passed (a codec's), so only its nesting is left to check.
    """
    if not isinstance(data, Mapping):
        raise InvalidJob("event data must be a JSON object (a JobExecutionEvent)",
                         [f"data: expected an object, got {kind(data)}"])
    if text_checked and nesting_within(data):
        details: list[str] = []
    else:
        details = json_problems(data, "data")
    if details:  # too deep, or strings no store can hold: look no further
        _refuse(details)
    for name in ("job_id", "trace_id"):
        problem = id_problem(data.get(name))
        if problem:
            details.append(f"data.{name}: {problem}")
    definition = data.get("agent_definition")
    if definition is None:
        details.append("data.agent_definition: required")
    elif not isinstance(definition, Mapping):
        details.append(f"data.agent_definition: expected an object, got {kind(definition)}")
    payload = data.get("input_payload")
    if payload is None:
        details.append("data.input_payload: required")
    elif not isinstance(payload, Mapping):
        details.append(f"data.input_payload: expected an object, got {kind(payload)}")
    else:
        details.extend(message_problems(payload.get("messages"), "data.input_payload.messages"))
    details.extend(limits_problems(data.get("limits")))
    if details:
        _refuse(details)
    assert isinstance(definition, Mapping) and isinstance(payload, Mapping)
    return Job(job_id=str(data["job_id"]), trace_id=str(data["trace_id"]),
               agent_definition=definition, input_payload=payload,
               limits=read_limits(data.get("limits")))


def check_id(where: str, value: object) -> list[str]:
    """The problem of a `job_id` or `trace_id` at `where`, as a detail line, if any."""
    problem = id_problem(value)
    return [f"{where}: {problem}"] if problem else []


def id_problem(value: object) -> str | None:
    """Why `value` is not a job_id / trace_id (CONTRACT section 2), or None.

    No control character and no outer whitespace: ids that differ only there
    would collide once a NATS header (`Nats-Msg-Id`) is normalised."""
    if value is None:
        return "required"
    if not isinstance(value, str):
        return f"expected a string, got {kind(value)}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    bad = next((c for c in value if c in _CONTROL), None)
    if bad is not None:
        return f"holds a control character (U+{ord(bad):04X})"
    if value != value.strip():
        return "has leading or trailing whitespace"
    return _string_problem(value)


def json_problems(value: object, where: str, max_depth: int = MAX_JSON_DEPTH) -> list[str]:
    """What makes a decoded JSON document unreadable: nesting deeper than `max_depth`,
    or a string (value or key) holding U+0000 or a lone surrogate (which PostgreSQL
    and UTF-8 cannot hold). At most `MAX_REPORTED`, each with its path.

    Decided cheaply (strings on the JSON text, at C speed; nesting level by level over
    the containers only); only a document with a problem is walked for the paths."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):  # far too deep, or not plain JSON
        return _walk(value, where, max_depth)
    if json_text_is_clean(text) and nesting_within(value, max_depth):
        return []
    return _walk(value, where, max_depth)


def json_text_is_clean(text: str) -> bool:
    """True when no string in the JSON `text` (as written or as read: escapes and raw
    characters alike) holds U+0000 or a lone surrogate. False may be a false alarm
    (an escaped backslash before `u0000`, a surrogate pair written as escapes)."""
    if _SUSPECT_ESCAPE.search(text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a raw lone surrogate
        return False
    return True


def nesting_within(value: object, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when `value` nests at most `max_depth` levels of objects and arrays (the
    value itself being level 1). Level by level, with every loop in C (`map`,
    `chain`, `filter`): a 10,000-node definition costs about a millisecond."""
    dicts: list[Any] = [value] if isinstance(value, dict) else []
    lists: list[Any] = [value] if isinstance(value, list) else []
    depth = 1
    while dicts or lists:
        if depth > max_depth:
            return False
        children = list(chain(chain.from_iterable(map(dict.values, dicts)),
                              chain.from_iterable(lists)))
        dicts = list(filter(_is_dict, children))
        lists = list(filter(_is_list, children))
        depth += 1
    return True


def _walk(value: object, where: str, max_depth: int) -> list[str]:
    problems: list[str] = []
    # A path is rendered only for a problem: (segment, parent) links cost nothing.
    stack: list[tuple[object, int, _Trail]] = [(value, 1, (where, None))]
    while stack and len(problems) < MAX_REPORTED:
        item, depth, trail = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                problems.append(f"{_path(trail)}: {problem}")
            continue
        if not isinstance(item, Mapping | list):
            continue
        if depth > max_depth:
            problems.append(f"{_path(trail)}: nested deeper than {max_depth} levels")
            continue
        if isinstance(item, list):
            stack.extend((child, depth + 1, (i, trail)) for i, child in enumerate(item))
            continue
        for key, child in item.items():
            key_problem = _string_problem(key) if isinstance(key, str) else None
            if key_problem:
                problems.append(f"{_path(trail)}: a key {key_problem}")
            stack.append((child, depth + 1, (str(key), trail)))
    return problems


_Trail = tuple[str | int, "_Trail"] | None


def _path(trail: _Trail) -> str:
    parts: list[str] = []
    while trail is not None:
        segment, trail = trail
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif trail is None:  # the root: the caller's own path
            parts.append(segment)
        else:
            parts.append("." + printable(segment))
    return "".join(reversed(parts))


def printable(text: str, limit: int = 40) -> str:
    """`text` safe to put in an error (escaped control characters and surrogates), short."""
    shown = text if len(text) <= limit else text[:limit - 3] + "..."
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in shown)


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds U+0000 (NUL)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (U+{ord(text[exc.start]):04X})"
    return None


def _refuse(details: list[str]) -> None:
    shown = details[:MAX_REPORTED]
    if len(details) > MAX_REPORTED:
        shown.append(f"... and {len(details) - MAX_REPORTED} more problem(s)")
    raise InvalidJob("invalid JobExecutionEvent: " + "; ".join(shown), shown)


def kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    for cls, name in names.items():
        if isinstance(value, cls) and (cls is not int or not isinstance(value, bool)):
            return name
    return type(value).__name__
