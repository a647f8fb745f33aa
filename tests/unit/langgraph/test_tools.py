"""The tool registry: built-ins, installed entry points, and how tool failures end."""

from __future__ import annotations

import uuid
from importlib.metadata import EntryPoint

import pytest
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import ENTRY_POINT_GROUP, LangGraphAgentRuntime
from agent_executor.adapters.langgraph.tools import (
    BUILTIN_TOOLS,
    ToolRegistry,
    tool_from_entry_point,
)
from agent_executor.domain.errors import ToolError
from tests.unit.langgraph.conftest import EventLog, Keys, definition, job_with, node, scripted

INSTALL_HINT = "install the example tools: .venv/bin/pip install -e examples/tools"


def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


async def whisper(text: str) -> str:
    """Lower-case a text."""
    return text.lower()


NOT_A_TOOL = 42


@tool
def fragile(mode: str) -> str:
    """Fails on purpose."""
    if mode == "recoverable":
        raise ToolException("the remote said no")
    raise RuntimeError("disk on fire")


def calling(tool_name: str, args: dict[str, object]) -> dict[str, object]:
    return scripted({"content": f"using {tool_name}",
                     "tool_calls": [{"name": tool_name, "args": args}]},
                    {"content": "finished"})


def test_the_example_packages_tool_is_found_by_name() -> None:
    registry = ToolRegistry.load()
    assert "word_count" in registry.names(), INSTALL_HINT
    (word_count,) = registry.resolve(["word_count"])
    assert word_count.invoke({"text": "one two\nthree"}) == {
        "words": 3, "lines": 2, "characters": 13}


def test_built_ins_are_always_there() -> None:
    assert {"current_time"} <= ToolRegistry.load().names()
    assert ToolRegistry().names() == {t.name for t in BUILTIN_TOOLS}


@pytest.mark.parametrize("target", ["shout", "whisper"])
def test_a_plain_function_becomes_a_tool_named_by_its_entry_point(target: str) -> None:
    ep = EntryPoint(f"my_{target}", f"{__name__}:{target}", ENTRY_POINT_GROUP)
    made = tool_from_entry_point(ep)
    assert isinstance(made, BaseTool)
    assert made.name == f"my_{target}"
    assert made.description.endswith("a text.")


def test_an_entry_point_that_is_not_a_tool_is_refused() -> None:
    with pytest.raises(TypeError, match="neither"):
        tool_from_entry_point(EntryPoint("x", f"{__name__}:NOT_A_TOOL", ENTRY_POINT_GROUP))


async def test_an_agent_calls_the_installed_tool(log: EventLog) -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load())
    d = definition(node("orchestrator", model=calling("word_count", {"text": "a b c"}),
                        tools=["word_count"]))

    output = await runtime.run(job_with(d, f"wc-{uuid.uuid4().hex[:8]}"), log)

    (end,) = log.of("on_tool_end")
    assert end["tool"] == "word_count" and end["status"] == "success"
    assert '"words": 3' in end["output"] or "'words': 3" in end["output"]
    assert output.output == "finished"


async def test_a_tool_exception_goes_back_to_the_agent(log: EventLog) -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry([fragile]))
    d = definition(node("orchestrator", model=calling("fragile", {"mode": "recoverable"}),
                        tools=["fragile"]))

    output = await runtime.run(job_with(d, f"te-{uuid.uuid4().hex[:8]}"), log)

    (end,) = log.of("on_tool_end")
    assert end["status"] == "error" and "the remote said no" in end["output"]
    assert output.output == "finished"


async def test_any_other_tool_failure_fails_the_job_with_tool_error(log: EventLog) -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry([fragile]))
    d = definition(node("orchestrator", model=calling("fragile", {"mode": "broken"}),
                        tools=["fragile"]))

    with pytest.raises(ToolError) as caught:
        await runtime.run(job_with(d, f"tf-{uuid.uuid4().hex[:8]}"), log)

    assert "'fragile' failed: RuntimeError: disk on fire" in caught.value.message


async def test_current_time_answers(runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    d = definition(node("orchestrator", model=calling("current_time", {"timezone": "UTC"}),
                        tools=["current_time"]))
    await runtime.run(job_with(d, f"ct-{uuid.uuid4().hex[:8]}"), log)
    (end,) = log.of("on_tool_end")
    assert end["status"] == "success" and end["output"].endswith("+00:00")
