"""agent_definition (CONTRACT section 3) to typed specs, or `InvalidAgentDefinition`.

Every problem is collected and reported together, each prefixed with the exact
path of the offending value (`nodes[1].config.model.provider`), so a producer
fixes a definition in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

from agent_executor.adapters.langgraph.limits import (
    canonical_json,
    count_problems,
    size_problem,
)
from agent_executor.adapters.langgraph.spec import (
    AgentDefinition,
    AgentSpec,
    ModelSpec,
    ScriptedReply,
    ScriptedToolCall,
)
from agent_executor.domain.errors import InvalidAgentDefinition
from agent_executor.domain.job import MAX_REPORTED

PROVIDERS = ("anthropic", "ollama", "openai", "scripted")
NODE_TYPES = ("Orchestrator", "Specialist")
# What deepagents offers every agent's model already (`task`: orchestrators only), as
# tests/unit/langgraph/test_builtin_tools.py reads it from a compiled graph; naming them
# in `config.tools` is harmless. Its `execute` is left out: without a sandbox it is
# never offered, and a call made anyway is refused.
BUILTIN_TOOL_NAMES = frozenset({"write_todos", "ls", "read_file", "write_file", "edit_file",
                                "delete", "glob", "grep", "task"})
DECISIONS = ("approve", "edit", "reject")
MAX_DELAY_MS = 600_000
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCRIPT_REFUSAL = (
    "scripts carried in an event are never executed; register the tool instead in an "
    "installed package under the Python entry-point group `agent_executor.tools` "
    "(see docs/tools.md) and name it in the node's config.tools"
)


def definition_digest(raw: Mapping[str, Any], canonical: str | None = None) -> str:
    text = canonical if canonical is not None else canonical_json(raw)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, problem: str) -> None:
        self.items.append(f"{path}: {problem}")


def parse_definition(raw: object, known_tools: Collection[str]) -> AgentDefinition:
    """Validate `raw`; raise `InvalidAgentDefinition` naming the path of each problem."""
    if not isinstance(raw, Mapping):
        raise InvalidAgentDefinition(
            f"invalid agent_definition: agent_definition: expected an object, got {_kind(raw)}")
    over = count_problems(raw)  # before anything costs more than a look at the sizes
    if over:
        raise InvalidAgentDefinition("invalid agent_definition: " + "; ".join(_shown(over)))
    canonical = canonical_json(raw)
    too_big = size_problem(canonical)
    if too_big:
        raise InvalidAgentDefinition(f"invalid agent_definition: {too_big}")
    p = _Problems()
    _tool_definitions(raw.get("tool_definitions"), known_tools, p)
    agents = _nodes(raw.get("nodes"), known_tools, p)
    _edges(raw.get("edges"), _node_ids(raw.get("nodes")), p)
    orchestrators = [a for a in agents if a is not None and a.kind == "Orchestrator"]
    if p.items:
        raise InvalidAgentDefinition("invalid agent_definition: " + "; ".join(_shown(p.items)))
    return AgentDefinition(
        name=str(raw.get("name") or orchestrators[0].name),
        version=str(raw.get("version") or ""),
        orchestrator=orchestrators[0],
        specialists=tuple(a for a in agents if a is not None and a.kind == "Specialist"),
        digest=definition_digest(raw, canonical),
        size=len(canonical.encode("utf-8", "surrogatepass")),
    )


def _shown(problems: list[str]) -> list[str]:
    """The first `MAX_REPORTED` problems (a hostile definition can have thousands)."""
    if len(problems) <= MAX_REPORTED:
        return problems
    return [*problems[:MAX_REPORTED], f"... and {len(problems) - MAX_REPORTED} more"]


def _tool_definitions(value: object, known_tools: Collection[str], p: _Problems) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        p.add("tool_definitions", f"expected a list, got {_kind(value)}")
        return
    for i, item in enumerate(value):
        where = f"tool_definitions[{i}]"
        if not isinstance(item, Mapping):
            p.add(where, f"expected an object, got {_kind(item)}")
            continue
        runtime = item.get("runtime")
        if isinstance(runtime, Mapping) and runtime.get("script") is not None:
            p.add(f"{where}.runtime.script", SCRIPT_REFUSAL)
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name:
            p.add(f"{where}.name", "required: the name of a registered tool")
        elif name not in known_tools and name not in BUILTIN_TOOL_NAMES:
            p.add(f"{where}.name", _unknown_tool(name, known_tools))


def _nodes(value: object, known_tools: Collection[str], p: _Problems) -> list[AgentSpec | None]:
    if value is None:
        p.add("nodes", "required: a list with one Orchestrator node and any Specialist nodes")
        return []
    if not isinstance(value, list):
        p.add("nodes", f"expected a list, got {_kind(value)}")
        return []
    if not value:
        p.add("nodes", "must hold at least one node (the Orchestrator)")
        return []
    agents = [_node(f"nodes[{i}]", node, known_tools, p) for i, node in enumerate(value)]
    seen_ids: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    orchestrator_at: int | None = None
    for i, node in enumerate(value):
        if not isinstance(node, Mapping):
            continue
        node_id = node.get("id")
        if isinstance(node_id, str) and node_id:
            if node_id in seen_ids:
                p.add(f"nodes[{i}].id", f"duplicate node id {node_id!r} "
                      f"(nodes[{seen_ids[node_id]}] has it too)")
            seen_ids.setdefault(node_id, i)
        config = node.get("config")
        name = config.get("name") if isinstance(config, Mapping) else None
        if isinstance(name, str) and name:
            if name in seen_names:
                p.add(f"nodes[{i}].config.name", f"duplicate agent name {name!r} "
                      f"(nodes[{seen_names[name]}] has it too)")
            seen_names.setdefault(name, i)
        if node.get("type") == "Orchestrator":
            if orchestrator_at is not None:
                p.add(f"nodes[{i}].type", f"a second Orchestrator (nodes[{orchestrator_at}] is "
                      "one already); exactly one node must be the Orchestrator")
            else:
                orchestrator_at = i
    if orchestrator_at is None:
        p.add("nodes", "no node has type 'Orchestrator'; exactly one is required")
    return agents


def _node(where: str, node: object, known_tools: Collection[str],
          p: _Problems) -> AgentSpec | None:
    if not isinstance(node, Mapping):
        p.add(where, f"expected an object, got {_kind(node)}")
        return None
    before = len(p.items)
    node_id = _text(node, "id", where, p)
    kind = node.get("type")
    if kind not in NODE_TYPES:
        p.add(f"{where}.type", f"unknown node type {kind!r}; expected Orchestrator or Specialist"
              if kind is not None else "required: Orchestrator or Specialist")
    config = node.get("config")
    if not isinstance(config, Mapping):
        p.add(f"{where}.config", "required: an object with name, system_prompt and model"
              if config is None else f"expected an object, got {_kind(config)}")
        return None
    cw = f"{where}.config"
    name = _text(config, "name", cw, p)
    if name and not NAME_PATTERN.match(name):
        p.add(f"{cw}.name", "must be 1-64 letters, digits, '_' or '-' (the model sees it)")
    system_prompt = _text(config, "system_prompt", cw, p)
    description = config.get("description")
    if description is not None and not isinstance(description, str):
        p.add(f"{cw}.description", f"expected a string, got {_kind(description)}")
    model = _model(config.get("model"), f"{cw}.model", p)
    tools = _tools(config.get("tools"), f"{cw}.tools", known_tools, p)
    is_orchestrator = kind == "Orchestrator"
    available = {*BUILTIN_TOOL_NAMES, *tools} - (set() if is_orchestrator else {"task"})
    interrupt_on = _interrupt_on(config.get("interrupt_on"), f"{cw}.interrupt_on",
                                 available, p)
    if len(p.items) > before or model is None:
        return None
    return AgentSpec(node_id=node_id, kind="Orchestrator" if is_orchestrator else
                     "Specialist", name=name, system_prompt=system_prompt, model=model,
                     description=description or f"The {name} specialist.", tools=tools,
                     interrupt_on=interrupt_on)


def _interrupt_on(value: object, where: str, available: Collection[str],
                  p: _Problems) -> dict[str, tuple[str, ...]]:
    """`{"tool": true | {"allowed_decisions": [...]}}` (CONTRACT section 2a)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        p.add(where, f"expected an object mapping tool names to true or "
              f"{{\"allowed_decisions\": [...]}}, got {_kind(value)}")
        return {}
    gated: dict[str, tuple[str, ...]] = {}
    for tool, rule in value.items():
        at = f"{where}.{tool}"
        if tool not in available:
            p.add(at, f"the node has no tool {tool!r}; it has " + ", ".join(sorted(available)))
            continue
        if rule is False:
            continue
        if rule is True:
            gated[tool] = DECISIONS
            continue
        allowed = rule.get("allowed_decisions") if isinstance(rule, Mapping) else None
        if (not isinstance(allowed, list) or not allowed
                or any(d not in DECISIONS for d in allowed)):
            p.add(at, "expected true, false or {\"allowed_decisions\": [...]} with one or "
                  "more of " + ", ".join(DECISIONS))
            continue
        gated[tool] = tuple(d for d in DECISIONS if d in allowed)
    return gated


def _tools(value: object, where: str, known_tools: Collection[str],
           p: _Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        p.add(where, f"expected a list of tool names, got {_kind(value)}")
        return ()
    names: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            p.add(f"{where}[{i}]", f"expected a tool name, got {_kind(name)}")
        elif name in BUILTIN_TOOL_NAMES:
            continue
        elif name not in known_tools:
            p.add(f"{where}[{i}]", _unknown_tool(name, known_tools))
        elif name not in names:
            names.append(name)
    return tuple(names)


def _model(value: object, where: str, p: _Problems) -> ModelSpec | None:
    if not isinstance(value, Mapping):
        p.add(where, "required: an object with provider and model"
              if value is None else f"expected an object, got {_kind(value)}")
        return None
    before = len(p.items)
    provider = value.get("provider")
    if provider not in PROVIDERS:
        p.add(f"{where}.provider", f"unknown provider {provider!r}; expected one of "
              + ", ".join(PROVIDERS) if provider is not None
              else "required: one of " + ", ".join(PROVIDERS))
    model = value.get("model", "scripted" if provider == "scripted" else None)
    if not isinstance(model, str) or not model:
        p.add(f"{where}.model", "required: the provider's model name")
    base_url = value.get("base_url")
    if base_url is not None and not (isinstance(base_url, str) and base_url):
        p.add(f"{where}.base_url", "expected a URL string")
    temperature = value.get("temperature")
    if temperature is not None and (isinstance(temperature, bool)
                                    or not isinstance(temperature, int | float)):
        p.add(f"{where}.temperature", "expected a number")
    replies: tuple[ScriptedReply, ...] = ()
    delay_ms = 0
    if provider == "scripted":
        replies = _replies(value.get("responses"), f"{where}.responses", p)
        delay = value.get("delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_MS:
            p.add(f"{where}.delay_ms", f"expected a whole number from 0 to {MAX_DELAY_MS}")
        else:
            delay_ms = delay
    if len(p.items) > before:
        return None
    return ModelSpec(provider=str(provider), model=str(model), path=where,
                     base_url=base_url if isinstance(base_url, str) else None,
                     temperature=float(temperature) if temperature is not None else None,
                     replies=replies, delay_ms=delay_ms)


def _replies(value: object, where: str, p: _Problems) -> tuple[ScriptedReply, ...]:
    if not isinstance(value, list) or not value:
        p.add(where, "required: a non-empty list of {content, tool_calls} objects")
        return ()
    replies: list[ScriptedReply] = []
    for i, item in enumerate(value):
        rw = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            p.add(rw, f"expected an object, got {_kind(item)}")
            continue
        content = item.get("content", "")
        if not isinstance(content, str):
            p.add(f"{rw}.content", f"expected a string, got {_kind(content)}")
            content = ""
        calls: list[ScriptedToolCall] = []
        raw_calls = item.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            p.add(f"{rw}.tool_calls", f"expected a list, got {_kind(raw_calls)}")
            raw_calls = []
        for j, call in enumerate(raw_calls):
            cw = f"{rw}.tool_calls[{j}]"
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                p.add(cw, "expected an object with a tool name and args")
                continue
            args = call.get("args", {})
            if not isinstance(args, Mapping):
                p.add(f"{cw}.args", f"expected an object, got {_kind(args)}")
                continue
            calls.append(ScriptedToolCall(call["name"], dict(args)))
        replies.append(ScriptedReply(content, tuple(calls)))
    return tuple(replies)


def _edges(value: object, node_ids: set[str], p: _Problems) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        p.add("edges", f"expected a list, got {_kind(value)}")
        return
    for i, edge in enumerate(value):
        if not isinstance(edge, Mapping):
            p.add(f"edges[{i}]", f"expected an object, got {_kind(edge)}")
            continue
        for end in ("source", "target"):
            ref = edge.get(end)
            if ref not in node_ids:
                known = ", ".join(sorted(node_ids)) or "none"
                p.add(f"edges[{i}].{end}", f"unknown node {ref!r} (node ids: {known})"
                      if ref is not None else "required: a node id")


def _node_ids(nodes: object) -> set[str]:
    if not isinstance(nodes, list):
        return set()
    return {n["id"] for n in nodes if isinstance(n, Mapping) and isinstance(n.get("id"), str)}


def _text(obj: Mapping[str, Any], key: str, where: str, p: _Problems) -> str:
    value = obj.get(key)
    if isinstance(value, str) and value.strip():
        return value
    p.add(f"{where}.{key}", "required: a non-empty string" if value is None or value == ""
          else "must not be blank" if isinstance(value, str)
          else f"expected a string, got {_kind(value)}")
    return ""


def _unknown_tool(name: str, known_tools: Collection[str]) -> str:
    known = ", ".join(sorted(known_tools)) or "none"
    return (f"unknown tool {name!r}; registered tools: {known} (plus the deep-agent built-ins); "
            "install a package that registers it under the entry-point group "
            "`agent_executor.tools`")


def _kind(value: object) -> str:
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "a string",
             int: "a number", float: "a number", type(None): "null"}
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
