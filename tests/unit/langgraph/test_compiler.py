"""Compiling: each distinct definition once, the cache bounded, built-ins always present."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph.compiler import AgentCompiler, delta_channels
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.adapters.langgraph.tools import ToolRegistry
from tests.unit.langgraph.conftest import Keys, definition, example, node, scripted


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


def test_the_cache_is_bounded_by_agents_and_bytes_as_well_as_by_count() -> None:
    c = AgentCompiler(InMemorySaver(), ChatModelFactory(Keys()), ToolRegistry(), max_cached=128,
                      max_cached_agents=6, max_cached_bytes=1 << 30)
    teams = [parsed(definition(node("orchestrator", system_prompt=f"team {i}"),
                               node("a", "Specialist"), node("b", "Specialist")))
             for i in range(4)]
    for team in teams:
        c.compile(team)
    assert c.cached == 2  # 3 agents each: two fit in 6
    small = AgentCompiler(InMemorySaver(), ChatModelFactory(Keys()), ToolRegistry(),
                          max_cached_bytes=teams[0].size * 2)
    for team in teams:
        small.compile(team)
    assert small.cached == 2
    lone = AgentCompiler(InMemorySaver(), ChatModelFactory(Keys()), ToolRegistry(),
                         max_cached_bytes=1)
    assert lone.compile(teams[0]) is lone.compile(teams[0])  # the newest always stays


class RecordingModel(ScriptedChatModel):
    """The scripted model, remembering the tools each agent is offered."""

    offered: ClassVar[dict[str, set[str]]] = {}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        names = {t["name"] if isinstance(t, dict) else t.name for t in tools}
        RecordingModel.offered.setdefault(self.agent, set()).update(names)
        return self


class RecordingFactory(ChatModelFactory):
    def create(self, spec: Any, agent: str) -> Any:
        return RecordingModel(agent=agent, replies=spec.replies, model_name=spec.model)


def _probe_calls(tag: str, sentinels: Path) -> list[dict[str, Any]]:
    """Reads of real host files, and writes, edits and deletes of files the test owns
    only (a regression must not damage the machine it runs on)."""
    return [
        {"name": "write_file", "args": {"file_path": f"/tmp/{tag}", "content": "pwned"}},
        {"name": "read_file", "args": {"file_path": "/etc/passwd"}},
        {"name": "ls", "args": {"path": "/etc"}},
        {"name": "glob", "args": {"pattern": "/etc/*"}},
        {"name": "grep", "args": {"pattern": "root", "path": "/etc"}},
        {"name": "edit_file", "args": {"file_path": str(sentinels / "edit-me"),
                                       "old_string": "intact", "new_string": "edited"}},
        {"name": "delete", "args": {"file_path": str(sentinels / "delete-me")}},
        {"name": "execute", "args": {"command": f"touch /tmp/{tag}-exec"}},
    ]


async def test_no_built_in_tool_touches_the_host(tmp_path: Path) -> None:
    tag = f"ae-hostile-{uuid.uuid4().hex}"
    specialist_tag = f"{tag}-specialist"
    for name in ("edit-me", "delete-me"):
        (tmp_path / name).write_text("intact")
    raw = definition(
        node("orchestrator", model=scripted(
            {"content": "", "tool_calls": [*_probe_calls(tag, tmp_path), {"name": "task", "args": {
                "description": "probe", "subagent_type": "prober"}}]},
            {"content": "done"})),
        node("prober", "Specialist", model=scripted(
            {"content": "", "tool_calls": _probe_calls(specialist_tag, tmp_path)},
            {"content": "done"})))
    agent = AgentCompiler(InMemorySaver(), RecordingFactory(Keys()),
                          ToolRegistry.load()).compile(parsed(raw))
    results: list[tuple[str, str]] = []
    async for part in agent.graph.astream(
            {"messages": [{"role": "user", "content": "probe the host"}]},
            {"configurable": {"thread_id": tag}}, stream_mode="updates", subgraphs=True):
        _, update = part
        for node_update in update.values():
            for message in (node_update or {}).get("messages", []) if isinstance(
                    node_update, dict) else []:
                if isinstance(message, ToolMessage):
                    results.append((str(message.name), str(message.content)))

    built_ins = {"write_todos", "ls", "read_file", "write_file", "edit_file", "glob", "grep",
                 "delete"}
    offered = RecordingModel.offered
    assert built_ins | {"task"} <= offered["orchestrator"] <= built_ins | {
        "task", "execute", "current_time", "word_count"}, offered["orchestrator"]
    assert built_ins <= offered["prober"] <= built_ins | {"execute"}, offered["prober"]
    for path in (f"/tmp/{tag}", f"/tmp/{tag}-exec", f"/tmp/{specialist_tag}",
                 f"/tmp/{specialist_tag}-exec"):
        assert not Path(path).exists(), path
    passwd = Path("/etc/passwd").read_text()
    by_tool: dict[str, list[str]] = {}
    for name, content in results:
        by_tool.setdefault(name, []).append(content)
        assert "root:x:" not in content and passwd[:40] not in content, (name, content)
    assert len(by_tool["read_file"]) == 2 and all(
        "not found" in c.lower() for c in by_tool["read_file"]), by_tool["read_file"]
    # No sandbox: `execute` is not offered, and a call made anyway is refused.
    assert "execute" not in offered["orchestrator"] | offered["prober"]
    assert len(by_tool["execute"]) == 2 and all(
        "execution not available" in c.lower() for c in by_tool["execute"]), by_tool
    assert all("not found" in c.lower() for c in by_tool["delete"] + by_tool["edit_file"])
    assert [(tmp_path / n).read_text() for n in ("edit-me", "delete-me")] == ["intact"] * 2


class CoalescingSaver(InMemorySaver):
    """Stands in for PooledPostgresSaver: what the compiler tells it."""

    def __init__(self) -> None:
        super().__init__()
        self.at_once: set[str] = set()

    def send_at_once(self, channels: Any) -> None:
        self.at_once |= set(channels)


async def test_the_compiler_names_the_delta_channels_whose_writes_cannot_wait() -> None:
    saver = CoalescingSaver()
    c = AgentCompiler(saver, ChatModelFactory(Keys()), ToolRegistry())
    agent = await c.acompile(parsed(example("spec-builder")["agent_definition"]))
    # deepagents' state keeps messages and files in delta channels (LangGraph 1.2):
    # LangGraph stores their writes before the checkpoint that refers to them.
    assert saver.at_once == delta_channels(agent.graph) == {"messages", "files"}
