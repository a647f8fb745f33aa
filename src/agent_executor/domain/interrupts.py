"""Human in the loop (CONTRACT section 2a): a run paused before tools a person must
decide on, and the decisions that continue it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_executor.domain.errors import InvalidRequest

DECISION_TYPES = ("approve", "edit", "reject")


@dataclass(frozen=True)
class ToolRequest:
    """One pending tool call waiting for a decision."""

    tool: str
    call_id: str
    input: Mapping[str, Any]
    allowed_decisions: tuple[str, ...]
    agent: str = ""

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tool": self.tool, "call_id": self.call_id,
                                "input": dict(self.input),
                                "allowed_decisions": list(self.allowed_decisions)}
        if self.agent:
            data["agent"] = self.agent
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ToolRequest:
        return cls(tool=str(data["tool"]), call_id=str(data.get("call_id") or ""),
                   input=dict(data.get("input") or {}),
                   allowed_decisions=tuple(data.get("allowed_decisions") or DECISION_TYPES),
                   agent=str(data.get("agent") or ""))


@dataclass(frozen=True)
class Interrupt:
    """The run paused: `requests` in order, one decision each (the `on_interrupt` data)."""

    interrupt_id: str
    agent: str
    requests: tuple[ToolRequest, ...]

    def to_data(self) -> dict[str, Any]:
        return {"agent": self.agent, "interrupt_id": self.interrupt_id,
                "requests": [r.to_data() for r in self.requests]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Interrupt:
        return cls(interrupt_id=str(data["interrupt_id"]), agent=str(data.get("agent") or ""),
                   requests=tuple(ToolRequest.from_data(r) for r in data.get("requests", [])))


@dataclass(frozen=True)
class Decision:
    """`approve`; `edit` (run the tool with `input`); `reject` (it does not run; the
    agent is told `message`)."""

    type: str
    input: Mapping[str, Any] | None = None
    message: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.input is not None:
            data["input"] = dict(self.input)
        if self.message is not None:
            data["message"] = self.message
        return data


@dataclass(frozen=True)
class Resume:
    """The decisions for the pending interrupt `interrupt_id`."""

    interrupt_id: str
    decisions: tuple[Decision, ...] = field(default_factory=tuple)

    def to_data(self) -> dict[str, Any]:
        return {"interrupt_id": self.interrupt_id,
                "decisions": [d.to_data() for d in self.decisions]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Resume:
        return cls(str(data["interrupt_id"]), tuple(
            Decision(str(d["type"]), d.get("input"), d.get("message"))
            for d in data.get("decisions", [])))


def read_decisions(raw: object, interrupt: Interrupt) -> tuple[Decision, ...]:
    """The decisions of a resume, checked against the pending `interrupt`: one per
    request, in order, each of a kind that request allows. Raises `InvalidRequest`
    naming every problem (`decisions[1].type: ...`)."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise InvalidRequest("decisions: expected a list with one decision per pending "
                             f"tool call ({len(interrupt.requests)})",
                             ["decisions: expected a list"])
    problems: list[str] = []
    if len(raw) != len(interrupt.requests):
        problems.append(f"decisions: {len(raw)} given, {len(interrupt.requests)} expected "
                        "(one per pending tool call, in order: "
                        + ", ".join(r.tool for r in interrupt.requests) + ")")
    decisions: list[Decision] = []
    for i, (item, request) in enumerate(zip(raw, interrupt.requests, strict=False)):
        where = f"decisions[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected an object like {{\"type\": \"approve\"}}")
            continue
        kind = item.get("type")
        if kind not in DECISION_TYPES:
            problems.append(f"{where}.type: expected one of {', '.join(DECISION_TYPES)}, "
                            f"got {kind!r}")
            continue
        if kind not in request.allowed_decisions:
            problems.append(f"{where}.type: {kind!r} is not allowed for {request.tool} "
                            f"(allowed: {', '.join(request.allowed_decisions)})")
            continue
        unknown = sorted(set(item) - {"type", "input", "message"})
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
        if kind == "edit":
            edited = item.get("input")
            if not isinstance(edited, Mapping):
                problems.append(f"{where}.input: an edit needs the tool's arguments as an "
                                "object")
                continue
            decisions.append(Decision("edit", input=dict(edited)))
        elif kind == "reject":
            message = item.get("message")
            if message is not None and not isinstance(message, str):
                problems.append(f"{where}.message: expected a string")
                continue
            decisions.append(Decision("reject", message=message))
        else:
            decisions.append(Decision("approve"))
    if problems:
        raise InvalidRequest("invalid decisions: " + "; ".join(problems), problems)
    return tuple(decisions)
