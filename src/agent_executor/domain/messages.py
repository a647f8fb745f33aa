"""Input messages (CONTRACT section 2): every shape the runtime's LangChain accepts,
and nothing it would reject, each problem named by its path.

A message is an object with `role` and `content`, and only these keys:

- `name`, `id`: optional strings;
- `tool_calls` (roles `assistant`/`ai` only): a list of calls, each
  `{"id", "name", "args": {...}}` (LangChain's shape) or
  `{"id", "type": "function", "function": {"name", "arguments": "<JSON object>"}}`
  (OpenAI's);
- `tool_call_id` (required for role `tool`): the id of a call made by an
  earlier assistant message; `status`: `success` or `error`.

`content` is a string or a list of parts, each a string or an object with a
string `type`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MESSAGE_ROLES = frozenset({"user", "human", "assistant", "ai", "system", "tool"})
ASSISTANT_ROLES = frozenset({"assistant", "ai"})
COMMON_KEYS = frozenset({"role", "content", "name", "id"})
KEYS_BY_ROLE: dict[str, frozenset[str]] = {
    **{role: COMMON_KEYS for role in ("user", "human", "system")},
    **{role: COMMON_KEYS | {"tool_calls"} for role in ASSISTANT_ROLES},
    "tool": COMMON_KEYS | {"tool_call_id", "status"},
}
TOOL_STATUSES = ("success", "error")


def message_problems(messages: object, where: str) -> list[str]:
    """Every problem of a `messages` list, each prefixed with its path."""
    if messages is None:
        return [f"{where}: required (a list of {{role, content}} objects)"]
    if not isinstance(messages, list):
        return [f"{where}: expected a list, got {_kind(messages)}"]
    if not messages:
        return [f"{where}: must hold at least one message"]
    problems: list[str] = []
    call_ids: set[str] = set()  # made by assistant messages so far
    for i, message in enumerate(messages):
        mw = f"{where}[{i}]"
        if not isinstance(message, Mapping):
            problems.append(f"{mw}: expected an object, got {_kind(message)}")
            continue
        role = message.get("role")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:  # a list is unhashable
            problems.append(f"{mw}.role: must be one of {', '.join(sorted(MESSAGE_ROLES))}")
            continue
        unknown = sorted(str(k) for k in message if k not in KEYS_BY_ROLE[role])
        if unknown:
            problems.append(f"{mw}: unknown key(s) {', '.join(map(repr, unknown[:5]))} for "
                            f"role {role!r} (allowed: {', '.join(sorted(KEYS_BY_ROLE[role]))})")
        problems.extend(_content_problems(message.get("content"), f"{mw}.content"))
        for key in ("name", "id"):
            if key in message and not isinstance(message[key], str):
                problems.append(f"{mw}.{key}: expected a string, got {_kind(message[key])}")
        if role in ASSISTANT_ROLES and "tool_calls" in message:
            problems.extend(_tool_calls(message["tool_calls"], f"{mw}.tool_calls", call_ids))
        if role == "tool":
            problems.extend(_tool_result(message, mw, call_ids))
    return problems


def _content_problems(content: object, where: str) -> list[str]:
    if isinstance(content, str):
        return []
    if not isinstance(content, list):
        return [f"{where}: expected a string or a list of content parts, got {_kind(content)}"]
    problems = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            continue
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            problems.append(f"{where}[{j}]: expected a string or an object with a string "
                            "`type` (a content part)")
    return problems


def _tool_calls(value: object, where: str, call_ids: set[str]) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: expected a list of tool calls, got {_kind(value)}"]
    problems = []
    for j, call in enumerate(value):
        cw = f"{where}[{j}]"
        if not isinstance(call, Mapping):
            problems.append(f"{cw}: expected an object, got {_kind(call)}")
            continue
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            problems.append(f"{cw}.id: required: a non-empty string (tool messages answer it)")
        else:
            call_ids.add(call_id)
        if "function" in call:
            problems.extend(_openai_call(call, cw))
            continue
        unknown = sorted(str(k) for k in call if k not in {"id", "name", "args", "type"})
        if unknown:
            problems.append(f"{cw}: unknown key(s) {', '.join(map(repr, unknown[:5]))} "
                            "(a tool call holds id, name, args)")
        if not isinstance(call.get("name"), str) or not call.get("name"):
            problems.append(f"{cw}.name: required: the tool's name")
        if not isinstance(call.get("args", {}), Mapping):
            problems.append(f"{cw}.args: expected an object, got {_kind(call.get('args'))}")
        if call.get("type", "tool_call") != "tool_call":
            problems.append(f"{cw}.type: expected 'tool_call' (or OpenAI's shape, with "
                            "`function`)")
    return problems


def _openai_call(call: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    if call.get("type", "function") != "function":
        problems.append(f"{where}.type: expected 'function'")
    function = call.get("function")
    if not isinstance(function, Mapping):
        return [*problems, f"{where}.function: expected an object with name and arguments"]
    if not isinstance(function.get("name"), str) or not function.get("name"):
        problems.append(f"{where}.function.name: required: the tool's name")
    arguments = function.get("arguments", "{}")
    try:
        decoded = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError):
        decoded = None
    if not isinstance(decoded, dict):
        problems.append(f"{where}.function.arguments: expected a string holding a JSON object")
    return problems


def _tool_result(message: Mapping[str, Any], where: str, call_ids: set[str]) -> list[str]:
    call_id = message.get("tool_call_id")
    problems = []
    if not isinstance(call_id, str) or not call_id:
        problems.append(f"{where}.tool_call_id: required for role 'tool': the id of the "
                        "tool call it answers")
    elif call_id not in call_ids:
        problems.append(f"{where}.tool_call_id: no earlier assistant message made a tool "
                        "call with this id")
    status = message.get("status", "success")
    if status not in TOOL_STATUSES:
        problems.append(f"{where}.status: expected 'success' or 'error'")
    return problems


def _kind(value: object) -> str:
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "a string",
             int: "a number", float: "a number", type(None): "null"}
    return next((name for cls, name in names.items() if isinstance(value, cls)),
                type(value).__name__)
