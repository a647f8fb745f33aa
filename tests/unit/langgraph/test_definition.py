"""Validation: every invalid definition names the path of what is wrong."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from agent_executor.adapters.langgraph.definition import (
    BUILTIN_TOOL_NAMES,
    definition_digest,
    parse_definition,
)
from agent_executor.domain.errors import InvalidAgentDefinition
from tests.unit.langgraph.conftest import definition, example, node, scripted

TOOLS = frozenset({"current_time", "word_count"})


def team() -> dict[str, Any]:
    return definition(node("orchestrator"), node("writer", "Specialist"),
                      node("reviewer", "Specialist"),
                      edges=[{"source": "orchestrator", "target": "writer"},
                             {"source": "orchestrator", "target": "reviewer"}])


def broken(change: Any) -> dict[str, Any]:
    d = team()
    change(d)
    return d


def problem(raw: object) -> str:
    with pytest.raises(InvalidAgentDefinition) as caught:
        parse_definition(raw, TOOLS)
    assert caught.value.error_type == "InvalidAgentDefinition"
    assert caught.value.retryable is False
    return caught.value.message


def test_the_examples_are_valid() -> None:
    for name in ("hello", "spec-builder", "openai", "anthropic", "ollama"):
        parsed = parse_definition(example(name)["agent_definition"], TOOLS)
        assert parsed.orchestrator.name == "Orchestrator"


def test_a_team_parses_into_typed_specs() -> None:
    parsed = parse_definition(team(), TOOLS)
    assert parsed.orchestrator.node_id == "orchestrator"
    assert [s.name for s in parsed.specialists] == ["writer", "reviewer"]
    assert parsed.specialists[0].description == "writer does things"
    assert parsed.orchestrator.model.provider == "scripted"
    assert parsed.orchestrator.model.replies[0].content == "ok"


@pytest.mark.parametrize(("case", "raw", "path", "words"), [
    ("not an object", ["nodes"], "agent_definition", "expected an object"),
    ("no nodes", {"name": "x"}, "nodes", "required"),
    ("empty nodes", {"nodes": []}, "nodes", "at least one node"),
    ("no Orchestrator", definition(node("writer", "Specialist")), "nodes",
     "no node has type 'Orchestrator'"),
    ("two Orchestrators", definition(node("a"), node("b")), "nodes[1].type",
     "a second Orchestrator"),
    ("duplicate node id", broken(lambda d: d["nodes"][2].update(id="writer")), "nodes[2].id",
     "duplicate node id 'writer'"),
    ("duplicate config.name",
     broken(lambda d: d["nodes"][2]["config"].update(name="writer")), "nodes[2].config.name",
     "duplicate agent name 'writer'"),
    ("unknown type", broken(lambda d: d["nodes"][1].update(type="Critic")), "nodes[1].type",
     "unknown node type 'Critic'"),
    ("unknown provider",
     broken(lambda d: d["nodes"][1]["config"]["model"].update(provider="acme")),
     "nodes[1].config.model.provider", "unknown provider 'acme'"),
    ("unknown tool",
     broken(lambda d: d["nodes"][0]["config"].update(tools=["current_time", "ls", "teleport"])),
     "nodes[0].config.tools[2]", "unknown tool 'teleport'"),
    ("missing system_prompt", broken(lambda d: d["nodes"][1]["config"].pop("system_prompt")),
     "nodes[1].config.system_prompt", "required"),
    ("blank system_prompt",
     broken(lambda d: d["nodes"][0]["config"].update(system_prompt="  ")),
     "nodes[0].config.system_prompt", "must not be blank"),
    ("missing model", broken(lambda d: d["nodes"][2]["config"].pop("model")),
     "nodes[2].config.model", "required"),
    ("missing model name",
     broken(lambda d: d["nodes"][0]["config"].update(model={"provider": "openai"})),
     "nodes[0].config.model.model", "required"),
    ("edge to unknown node", broken(lambda d: d["edges"][0].update(target="ghost")),
     "edges[0].target", "unknown node 'ghost'"),
    ("edge from unknown node", broken(lambda d: d["edges"][1].update(source="ghost")),
     "edges[1].source", "unknown node 'ghost'"),
    ("name the model cannot carry",
     broken(lambda d: d["nodes"][1]["config"].update(name="spec writer")),
     "nodes[1].config.name", "letters, digits"),
    ("scripted without responses",
     broken(lambda d: d["nodes"][0]["config"]["model"].pop("responses")),
     "nodes[0].config.model.responses", "non-empty list"),
    ("scripted negative delay",
     broken(lambda d: d["nodes"][0]["config"]["model"].update(delay_ms=-1)),
     "nodes[0].config.model.delay_ms", "whole number"),
    ("scripted tool call args not an object",
     broken(lambda d: d["nodes"][0]["config"].update(model=scripted(
         {"content": "x", "tool_calls": [{"name": "ls", "args": [1]}]}))),
     "nodes[0].config.model.responses[0].tool_calls[0].args", "expected an object"),
    ("unknown tool definition",
     broken(lambda d: d.update(tool_definitions=[{"name": "teleport"}])),
     "tool_definitions[0].name", "unknown tool 'teleport'"),
])
def test_each_invalid_definition_names_its_path(case: str, raw: object, path: str,
                                                words: str) -> None:
    message = problem(raw)
    assert f"{path}: " in message, message
    assert words in message, message


def test_every_problem_is_reported_at_once() -> None:
    d = team()
    d["nodes"][1]["config"]["model"]["provider"] = "acme"
    d["nodes"][2]["config"]["tools"] = ["teleport"]
    d["edges"][0]["target"] = "ghost"
    message = problem(d)
    for path in ("nodes[1].config.model.provider", "nodes[2].config.tools[0]",
                 "edges[0].target"):
        assert path in message


def test_a_tool_definition_with_a_script_is_refused_and_says_why() -> None:
    d = team()
    d["tool_definitions"] = [{"name": "fetch", "runtime": {"type": "python",
                                                           "script": "print('hi')"}}]
    message = problem(d)
    assert "tool_definitions[0].runtime.script: " in message
    assert "never executed" in message
    assert "agent_executor.tools" in message and "entry-point" in message


def test_built_in_tools_may_be_named_and_are_not_duplicated() -> None:
    d = team()
    d["nodes"][0]["config"]["tools"] = sorted(BUILTIN_TOOL_NAMES) + ["word_count"]
    assert parse_definition(d, TOOLS).orchestrator.tools == ("word_count",)


def test_the_digest_is_a_content_hash() -> None:
    a, b = team(), copy.deepcopy(team())
    b_reordered = dict(reversed(list(b.items())))
    assert definition_digest(a) == definition_digest(b_reordered)
    b["nodes"][0]["config"]["system_prompt"] = "Something else."
    assert definition_digest(a) != definition_digest(b)


def _reply(**extra: Any) -> dict[str, Any]:
    return {"content": "ok", **extra}


def _deep_args(depth: int) -> dict[str, Any]:
    args: Any = "leaf"
    for _ in range(depth):
        args = {"a": args}
    return dict(args)


@pytest.mark.parametrize(("build", "needle"), [
    (lambda: definition(node("orchestrator"), *[node(f"s{i}", "Specialist")
                                                 for i in range(10_000)]),
     "nodes: 10001 entries, over the limit of 64 (MAX_NODES)"),
    (lambda: definition(node("orchestrator", system_prompt="p" * (1 << 20))),
     "nodes[0].config.system_prompt: 1048576 characters, over the limit of 262144 "
     "(MAX_PROMPT_CHARS)"),
    (lambda: definition(node("orchestrator"), node("w", "Specialist",
                                                   description="d" * 20_000)),
     "nodes[1].config.description: 20000 characters, over the limit of 16384"),
    (lambda: definition(node("orchestrator", tools=["word_count"] * 65)),
     "nodes[0].config.tools: 65 entries, over the limit of 64 (MAX_TOOLS_PER_NODE)"),
    (lambda: definition(node("orchestrator", model=scripted(*[_reply()] * 257))),
     "nodes[0].config.model.responses: 257 entries, over the limit of 256"),
    (lambda: definition(node("orchestrator", model=scripted(_reply(content="c" * 300_000)))),
     "nodes[0].config.model.responses[0].content: 300000 characters"),
    (lambda: definition(node("orchestrator", model=scripted(_reply(tool_calls=[
        {"name": "ls", "args": {}}] * 65)))),
     "responses[0].tool_calls: 65 entries, over the limit of 64"),
    (lambda: definition(node("orchestrator", model=scripted(_reply(tool_calls=[
        {"name": "write_file", "args": {"content": "x" * 300_000}}])))),
     "responses[0].tool_calls[0].args: 300014 bytes of JSON, over the limit of 262144 "
     "(MAX_ARGS_BYTES)"),
    (lambda: definition(node("orchestrator", model=scripted(_reply(tool_calls=[
        {"name": "ls", "args": _deep_args(40)}])))),
     "responses[0].tool_calls[0].args.a.a"),
    (lambda: definition(*[node("orchestrator", system_prompt="p" * 200_000)]
                        + [node(f"s{i}", "Specialist", system_prompt="p" * 200_000)
                           for i in range(30)]),
     "over the limit of 4194304 (MAX_DEFINITION_BYTES)"),
    (lambda: definition(node("orchestrator"), edges=[{"source": "a", "target": "b"}] * 5000),
     "edges: 5000 entries, over the limit of 4096 (MAX_EDGES)"),
])
def test_a_definition_past_a_limit_is_refused_naming_the_limit_and_the_path(
        build: Any, needle: str) -> None:
    raw = build()
    started = time.perf_counter()
    message = problem(raw)
    assert needle in message, message
    assert len(message) < 2000  # one line per limit passed, not one per node
    assert time.perf_counter() - started < 1.0


def test_a_definition_at_the_limits_is_accepted() -> None:
    call = {"name": "write_file", "args": {"file_path": "/a", "content": "y" * 1000}}
    specialists = [node(f"s{i}", "Specialist", system_prompt="p" * 40_000,
                        model=scripted(*[_reply(tool_calls=[call])] * 8))
                   for i in range(63)]
    raw = definition(node("orchestrator", tools=sorted(TOOLS)), *specialists)
    parsed = parse_definition(raw, TOOLS)
    assert len(parsed.specialists) == 63 and parsed.size > 2_500_000


def test_thousands_of_problems_are_reported_as_the_first_twenty() -> None:
    raw = definition(node("orchestrator", tools=[f"nope{i}" for i in range(60)]))
    message = problem(raw)
    assert "... and 40 more" in message and message.count("unknown tool") == 20


def test_docs_security_lists_every_limit_with_its_value() -> None:
    from pathlib import Path

    from agent_executor.adapters.langgraph.limits import LIMITS

    page = (Path(__file__).resolve().parents[3] / "docs" / "security.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip()
            for line in page.splitlines() if line.startswith("| `MAX_")}
    assert {name: rows.get(name, "").split(" ")[0] for name in LIMITS} == {
        name: str(value) for name, value in LIMITS.items()}
