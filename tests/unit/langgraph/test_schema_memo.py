"""The described `grep` copy is made once per agent: its tool-call schema is built once,
and the model is handed exactly what deepagents would hand it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from deepagents.middleware.filesystem import FilesystemMiddleware
from langchain_core.tools import BaseTool
from langchain_core.tools import base as tools_base
from langchain_core.utils.function_calling import convert_to_openai_tool

from agent_executor.adapters.langgraph.schema_memo import reuse_described_tool_copies
from tests.unit.langgraph.conftest import hello_graph, run_hello


@pytest.fixture
def schemas_built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each tool's tool-call schema (a pydantic model) is built."""
    built: Counter[str] = Counter()
    build = tools_base._create_subset_model  # type: ignore[attr-defined]

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        built[name] += 1
        return build(name, *args, **kwargs)

    monkeypatch.setattr(tools_base, "_create_subset_model", counting)
    return built


async def test_a_compiled_agent_builds_each_tool_schema_once(
        schemas_built: Counter[str]) -> None:
    graph = await hello_graph()
    for run in range(2):
        state = await run_hello(graph)
        assert state["messages"][-1].content  # the script's answer: 3 model calls ran
        if run == 0:
            assert schemas_built["grep"] == 1, schemas_built
            schemas_built.clear()
    assert schemas_built == Counter(), "the second job rebuilt tool-call schemas"


def _named(tools: list[Any], name: str) -> Any:
    return next(tool for tool in tools if tool.name == name)


def test_the_model_gets_the_tool_deepagents_describes_and_the_same_one_each_call() -> None:
    reuse_described_tool_copies()
    reuse_described_tool_copies()  # idempotent
    middleware = FilesystemMiddleware()
    tools: list[Any] = list(middleware.tools)
    grep = _named(tools, "grep")

    first: list[Any] = middleware._with_filtered_grep_description(
        tools, include_execution=False)
    again: list[Any] = middleware._with_filtered_grep_description(
        list(tools), include_execution=False)
    described = _named(first, "grep")
    assert isinstance(described, BaseTool)
    assert described is not grep and described.description != grep.description
    expected = grep.model_copy(update={"description": described.description})
    assert convert_to_openai_tool(described) == convert_to_openai_tool(expected)
    assert _named(again, "grep") is described
    assert [t for t in first if t.name != "grep"] == [t for t in tools if t.name != "grep"]
    # with `execute` available deepagents keeps the tool as it is, and so does this
    assert middleware._with_filtered_grep_description(tools, include_execution=True) is tools
