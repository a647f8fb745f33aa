"""What one agent_definition may ask for (docs/security.md, "Limits").

Checked before anything else reads the definition, and cheaply (one pass over
the sizes, nothing per node past `MAX_NODES`), so a definition built to exhaust
the process is refused at once, by name of the limit and the path that passed
it. Each bound is far above what a real team of agents needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent_executor.domain.job import json_problems

KIB = 1024
MAX_DEFINITION_BYTES = 4 * KIB * KIB  # the canonical JSON of the whole definition
MAX_NODES = 64
MAX_EDGES = 4096
MAX_TOOL_DEFINITIONS = 256
MAX_TOOLS_PER_NODE = 64
MAX_PROMPT_CHARS = 256 * KIB  # config.system_prompt
MAX_DESCRIPTION_CHARS = 16 * KIB  # config.description
MAX_TEXT_CHARS = 2 * KIB  # ids, model names, base URLs, tool names
MAX_SCRIPTED_RESPONSES = 256  # per scripted model
MAX_RESPONSE_CHARS = 256 * KIB  # a scripted response's content
MAX_TOOL_CALLS_PER_RESPONSE = 64
MAX_ARGS_BYTES = 256 * KIB  # a scripted tool call's args, as JSON
MAX_ARGS_DEPTH = 32

LIMITS: dict[str, int] = {name: value for name, value in globals().items()
                          if name.startswith("MAX_") and isinstance(value, int)}


def canonical_json(raw: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces: what the digest hashes and `MAX_DEFINITION_BYTES` measures."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def size_problem(canonical: str) -> str | None:
    """The total: `canonical` (see `canonical_json`) over `MAX_DEFINITION_BYTES`."""
    size = len(canonical.encode("utf-8", "surrogatepass"))
    if size > MAX_DEFINITION_BYTES:
        return (f"agent_definition: {size} bytes, over the limit of {MAX_DEFINITION_BYTES} "
                "(MAX_DEFINITION_BYTES)")
    return None


def count_problems(raw: Mapping[str, Any]) -> list[str]:
    """Each count or size limit `raw` passes (all but the total), as
    `path: ... (LIMIT_NAME)`; touches only those values, nothing past `MAX_NODES`."""
    problems: list[str] = []
    _count(raw.get("tool_definitions"), "tool_definitions", MAX_TOOL_DEFINITIONS,
           "MAX_TOOL_DEFINITIONS", problems)
    _count(raw.get("edges"), "edges", MAX_EDGES, "MAX_EDGES", problems)
    nodes = raw.get("nodes")
    if not _count(nodes, "nodes", MAX_NODES, "MAX_NODES", problems):
        return problems
    assert isinstance(nodes, list)
    for i, node in enumerate(nodes):
        if isinstance(node, Mapping):
            _node(node, f"nodes[{i}]", problems)
    return problems


def _node(node: Mapping[str, Any], where: str, problems: list[str]) -> None:
    _chars(node.get("id"), f"{where}.id", MAX_TEXT_CHARS, "MAX_TEXT_CHARS", problems)
    config = node.get("config")
    if not isinstance(config, Mapping):
        return
    cw = f"{where}.config"
    _chars(config.get("system_prompt"), f"{cw}.system_prompt", MAX_PROMPT_CHARS,
           "MAX_PROMPT_CHARS", problems)
    _chars(config.get("description"), f"{cw}.description", MAX_DESCRIPTION_CHARS,
           "MAX_DESCRIPTION_CHARS", problems)
    tools = config.get("tools")
    if _count(tools, f"{cw}.tools", MAX_TOOLS_PER_NODE, "MAX_TOOLS_PER_NODE", problems):
        assert isinstance(tools, list)
        for j, name in enumerate(tools):
            _chars(name, f"{cw}.tools[{j}]", MAX_TEXT_CHARS, "MAX_TEXT_CHARS", problems)
    model = config.get("model")
    if isinstance(model, Mapping):
        _model(model, f"{cw}.model", problems)


def _model(model: Mapping[str, Any], where: str, problems: list[str]) -> None:
    for key in ("model", "base_url"):
        _chars(model.get(key), f"{where}.{key}", MAX_TEXT_CHARS, "MAX_TEXT_CHARS", problems)
    responses = model.get("responses")
    if not _count(responses, f"{where}.responses", MAX_SCRIPTED_RESPONSES,
                  "MAX_SCRIPTED_RESPONSES", problems):
        return
    assert isinstance(responses, list)
    for i, reply in enumerate(responses):
        if not isinstance(reply, Mapping):
            continue
        rw = f"{where}.responses[{i}]"
        _chars(reply.get("content"), f"{rw}.content", MAX_RESPONSE_CHARS, "MAX_RESPONSE_CHARS",
               problems)
        calls = reply.get("tool_calls")
        if not _count(calls, f"{rw}.tool_calls", MAX_TOOL_CALLS_PER_RESPONSE,
                      "MAX_TOOL_CALLS_PER_RESPONSE", problems):
            continue
        assert isinstance(calls, list)
        for j, call in enumerate(calls):
            if isinstance(call, Mapping) and "args" in call:
                _args(call["args"], f"{rw}.tool_calls[{j}].args", problems)


def _args(args: object, where: str, problems: list[str]) -> None:
    deep = json_problems(args, where, max_depth=MAX_ARGS_DEPTH)
    if deep:
        problems.append(f"{deep[0]} (MAX_ARGS_DEPTH)")
        return
    size = len(canonical_json({"a": args}).encode("utf-8", "surrogatepass")) - 6
    if size > MAX_ARGS_BYTES:
        problems.append(f"{where}: {size} bytes of JSON, over the limit of {MAX_ARGS_BYTES} "
                        "(MAX_ARGS_BYTES)")


def _count(value: object, where: str, limit: int, name: str, problems: list[str]) -> bool:
    """True when `value` is a list within `limit` (worth looking into)."""
    if not isinstance(value, list):
        return False
    if len(value) > limit:
        problems.append(f"{where}: {len(value)} entries, over the limit of {limit} ({name})")
        return False
    return True


def _chars(value: object, where: str, limit: int, name: str, problems: list[str]) -> None:
    if isinstance(value, str) and len(value) > limit:
        problems.append(f"{where}: {len(value)} characters, over the limit of {limit} ({name})")
