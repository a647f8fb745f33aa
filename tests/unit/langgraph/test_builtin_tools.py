"""BUILTIN_TOOL_NAMES is what deepagents (at the pinned version) really gives every
agent: read from a compiled graph, so the list and docs/tools.md cannot drift."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import BUILTIN_TOOL_NAMES, parse_definition
from agent_executor.adapters.langgraph.tools import BUILTIN_TOOLS, ToolRegistry
from tests.unit.langgraph.conftest import Keys, definition, node, scripted
from tests.unit.langgraph.test_compiler import RecordingFactory, RecordingModel

DOCS = Path(__file__).resolve().parents[3] / "docs" / "tools.md"
# In deepagents' tool node but never offered to the model without a sandbox backend
# (a call made anyway is refused: test_compiler.test_no_built_in_tool_touches_the_host).
NOT_OFFERED = frozenset({"execute"})


def team() -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    return definition(
        node(f"lead-{tag}", model=scripted(
            {"content": "", "tool_calls": [{"name": "task", "args": {
                "description": "help", "subagent_type": f"helper-{tag}"}}]},
            {"content": "done"})),
        node(f"helper-{tag}", "Specialist", model=scripted({"content": "helped"})))


async def offered_per_agent(raw: dict[str, object]) -> dict[str, set[str]]:
    RecordingModel.offered.clear()
    agent = AgentCompiler(InMemorySaver(), RecordingFactory(Keys()), ToolRegistry()
                          ).compile(parse_definition(raw, ToolRegistry().names()))
    await agent.graph.ainvoke({"messages": [{"role": "user", "content": "go"}]},
                              {"configurable": {"thread_id": uuid.uuid4().hex}})
    return {name: set(tools) for name, tools in RecordingModel.offered.items()}


async def test_builtin_tool_names_are_the_tools_every_agent_is_offered() -> None:
    raw = team()
    offered = await offered_per_agent(raw)
    lead, helper = (n["config"]["name"] for n in raw["nodes"])  # type: ignore[index]
    assert offered[lead] == BUILTIN_TOOL_NAMES
    assert offered[helper] == BUILTIN_TOOL_NAMES - {"task"}


def test_the_tool_node_holds_the_built_ins_and_execute_only() -> None:
    agent = AgentCompiler(InMemorySaver(), RecordingFactory(Keys()), ToolRegistry()
                          ).compile(parse_definition(team(), ToolRegistry().names()))
    held = set(agent.graph.nodes["tools"].bound.tools_by_name)  # type: ignore[attr-defined]
    assert held == BUILTIN_TOOL_NAMES | NOT_OFFERED


def test_a_delete_can_wait_for_a_person() -> None:
    raw = definition(node("orchestrator", interrupt_on={"delete": True}))
    parse_definition(raw, ToolRegistry().names())  # raises InvalidAgentDefinition if not


def test_docs_tools_md_names_every_tool_an_agent_can_get() -> None:
    text = DOCS.read_text()
    named = set(re.findall(r"`([a-z_]+)`", text))
    expected = BUILTIN_TOOL_NAMES | NOT_OFFERED | {t.name for t in BUILTIN_TOOLS}
    assert expected <= named, sorted(expected - named)
