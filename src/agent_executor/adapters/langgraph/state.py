"""JSON views of deep-agent state: messages, files, todos. Never a Python repr."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from deepagents.backends.utils import create_file_data, file_data_to_string
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel

from agent_executor.domain.result import AgentOutput

ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}
_SKIP = object()


def message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.content, list) else str(message.content)


def message_data(message: BaseMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"role": ROLES.get(message.type, message.type),
                            "content": message_text(message)}
    if isinstance(message, AIMessage) and message.tool_calls:
        data["tool_calls"] = [{"id": c["id"], "name": c["name"], "args": to_json(c["args"])}
                              for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        data["tool_call_id"] = message.tool_call_id
        if message.name:
            data["name"] = message.name
        if message.status == "error":
            data["status"] = "error"
    return data


def files_data(files: object) -> dict[str, str | None]:
    """`{path: content}`; `None` marks a deleted file (in updates)."""
    if not isinstance(files, Mapping):
        return {}
    out: dict[str, str | None] = {}
    for path, file in files.items():
        if file is None:
            out[str(path)] = None
        elif isinstance(file, Mapping):
            out[str(path)] = file_data_to_string(file)  # type: ignore[arg-type]
        else:
            out[str(path)] = str(file)
    return out


def input_files(files: object) -> dict[str, Any]:
    """`input_payload.files` (`{path: "text"}`, or FileData objects) as state files."""
    if not isinstance(files, Mapping):
        return {}
    return {str(path): create_file_data(content) if isinstance(content, str) else content
            for path, content in files.items()}


def to_json(value: Any) -> Any:
    """JSON-ready: messages as role/content, models dumped; anything else left out."""
    converted = _convert(value)
    return None if converted is _SKIP else converted


def _convert(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, BaseMessage):
        return message_data(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        out = {str(k): _convert(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _SKIP}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes):
        return [v for v in (_convert(item) for item in value) if v is not _SKIP]
    return _SKIP


def update_data(update: Mapping[str, Any]) -> dict[str, Any]:
    """A node's state update for `on_state_update`: public keys, JSON values."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key.startswith("_"):
            continue
        if key == "files":
            out[key] = files_data(value)
        elif key == "messages" and isinstance(value, Sequence):
            out[key] = [message_data(m) for m in value if isinstance(m, BaseMessage)]
        else:
            converted = _convert(value)
            if converted is not _SKIP:
                out[key] = converted
    return out


def agent_output(values: Mapping[str, Any]) -> AgentOutput:
    messages = [m for m in values.get("messages", []) if isinstance(m, BaseMessage)]
    files = {path: text for path, text in files_data(values.get("files")).items()
             if text is not None}
    return AgentOutput(output=_last_ai_text(messages), files=files,
                       messages=[message_data(m) for m in messages])


def _last_ai_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, AIMessage) and message_text(message).strip():
            return message_text(message)
    return ""
