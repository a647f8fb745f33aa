"""Compiling: each distinct definition once, the cache bounded, built-ins always present."""

from __future__ import annotations

import time
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.tools import ToolRegistry
from tests.unit.langgraph.conftest import Keys, definition, example, node


def compiler(max_cached: int = 128) -> AgentCompiler:
    return AgentCompiler(InMemorySaver(), ChatModelFactory(Keys()), ToolRegistry(),
                         max_cached=max_cached)


def parsed(raw: dict[str, Any]) -> Any:
    return parse_definition(raw, ToolRegistry().names())


def variant(i: int) -> dict[str, Any]:
    return definition(node("orchestrator", system_prompt=f"Prompt number {i}."))


async def test_an_equal_definition_is_compiled_once_and_hits_are_cheap() -> None:
    c = compiler()
    team = example("spec-builder")["agent_definition"]

    started = time.perf_counter()
    first = await c.acompile(parsed(team))
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(50):
        again = await c.acompile(parsed(team))  # a fresh parse of equal content
    hit_seconds = (time.perf_counter() - started) / 50

    assert again is first
    assert (c.misses, c.hits) == (1, 50)
    assert hit_seconds < compile_seconds / 5, (hit_seconds, compile_seconds)


def test_the_cache_is_a_bounded_lru() -> None:
    c = compiler(max_cached=2)
    a, b, d = (parsed(variant(i)) for i in range(3))
    first_a = c.compile(a)
    c.compile(b)
    c.compile(a)  # a is now the most recent
    c.compile(d)  # evicts b
    assert c.compile(a) is first_a
    misses = c.misses
    c.compile(b)
    assert c.misses == misses + 1


def test_every_agent_gets_the_built_ins_and_the_orchestrator_gets_task() -> None:
    agent = compiler().compile(parsed(example("spec-builder")["agent_definition"]))
    tools_node = agent.graph.nodes["tools"].bound
    names = set(tools_node.tools_by_name)  # type: ignore[attr-defined]
    assert {"write_todos", "ls", "read_file", "write_file", "edit_file", "glob", "grep",
            "task"} <= names
