"""The job: what a producer asks the service to run (CONTRACT section 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_executor.domain.errors import InvalidJob

MAX_ID_LENGTH = 200
MESSAGE_ROLES = frozenset({"user", "human", "assistant", "ai", "system", "tool"})


@dataclass(frozen=True)
class Job:
    job_id: str
    trace_id: str
    agent_definition: Mapping[str, Any] = field(repr=False)
    input_payload: Mapping[str, Any] = field(repr=False)

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        return list(self.input_payload.get("messages", []))

    def to_data(self) -> dict[str, Any]:
        """The JobExecutionEvent, as it arrived (stored so a job can be resumed)."""
        return {"job_id": self.job_id, "trace_id": self.trace_id,
                "agent_definition": dict(self.agent_definition),
                "input_payload": dict(self.input_payload)}


def parse_job(data: object) -> Job:
    """Read a JobExecutionEvent; raise `InvalidJob` listing every problem found.

    Only what makes the event unreadable is checked here; the agent definition's
    meaning is checked by the runtime, so a bad definition is a job that fails.
    """
    if not isinstance(data, Mapping):
        raise InvalidJob("event data must be a JSON object (a JobExecutionEvent)",
                         [f"data: expected an object, got {_kind(data)}"])
    details: list[str] = []
    for name in ("job_id", "trace_id"):
        details.extend(check_id(f"data.{name}", data.get(name)))
    definition = data.get("agent_definition")
    if definition is None:
        details.append("data.agent_definition: required")
    elif not isinstance(definition, Mapping):
        details.append(f"data.agent_definition: expected an object, got {_kind(definition)}")
    payload = data.get("input_payload")
    if payload is None:
        details.append("data.input_payload: required")
    elif not isinstance(payload, Mapping):
        details.append(f"data.input_payload: expected an object, got {_kind(payload)}")
    else:
        details.extend(_message_problems(payload.get("messages")))
    if details:
        raise InvalidJob("invalid JobExecutionEvent: " + "; ".join(details), details)
    assert isinstance(definition, Mapping) and isinstance(payload, Mapping)
    return Job(job_id=str(data["job_id"]), trace_id=str(data["trace_id"]),
               agent_definition=definition, input_payload=payload)


def check_id(where: str, value: object) -> list[str]:
    """The problems of a `job_id` or `trace_id` (CONTRACT section 2), if any."""
    if value is None:
        return [f"{where}: required"]
    if not isinstance(value, str):
        return [f"{where}: expected a string, got {_kind(value)}"]
    if not value.strip():
        return [f"{where}: must not be empty"]
    if len(value) > MAX_ID_LENGTH:
        return [f"{where}: longer than {MAX_ID_LENGTH} characters"]
    return []


def _message_problems(messages: object) -> list[str]:
    where = "data.input_payload.messages"
    if messages is None:
        return [f"{where}: required (a list of {{role, content}} objects)"]
    if not isinstance(messages, list):
        return [f"{where}: expected a list, got {_kind(messages)}"]
    if not messages:
        return [f"{where}: must hold at least one message"]
    problems: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            problems.append(f"{where}[{i}]: expected an object, got {_kind(message)}")
            continue
        role = message.get("role")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:  # a list is unhashable
            problems.append(f"{where}[{i}].role: must be one of {', '.join(sorted(MESSAGE_ROLES))}")
        if not isinstance(message.get("content"), str | list):
            problems.append(f"{where}[{i}].content: expected a string")
    return problems


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    for cls, name in names.items():
        if isinstance(value, cls) and (cls is not int or not isinstance(value, bool)):
            return name
    return type(value).__name__
