"""LangSmith's per-hook bookkeeping only in agents built while LangSmith tracing is on."""

from __future__ import annotations

from typing import Any

import langsmith
import pytest
from langsmith import run_helpers

from agent_executor.adapters.langgraph.tracing import _traceable_when_tracing
from tests.unit.langgraph.conftest import hello_graph, run_hello


async def test_an_agent_built_with_tracing_off_sets_up_no_langsmith_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    setup = run_helpers._setup_run

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(args)
        return setup(*args, **kwargs)

    monkeypatch.setattr(run_helpers, "_setup_run", counting)
    state = await run_hello(await hello_graph())

    assert state["messages"][-1].content == "Done: /hello.md says hello to the world."
    assert runs == []


def hook(value: int) -> int:
    return value + 1


def test_with_langsmith_tracing_on_the_hooks_get_langsmiths_wrapper() -> None:
    with langsmith.tracing_context(enabled=True):
        wrapped = _traceable_when_tracing(name="m.wrap_model_call")(hook)
    with langsmith.tracing_context(enabled=False):
        unwrapped = _traceable_when_tracing(name="m.wrap_model_call")(hook)
    assert wrapped is not hook and run_helpers.is_traceable_function(wrapped)
    assert unwrapped is hook
