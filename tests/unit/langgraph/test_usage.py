"""Usage from the checkpoint, budgets before the model call, call metrics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.domain.errors import BudgetExceeded
from agent_executor.domain.job import Job, parse_job
from agent_executor.domain.usage import Limits

from .conftest import EventLog, Keys, definition, node, scripted


class WordsSeen(BaseCallbackHandler):
    """Counts, independently of the model, the words each model call was given."""

    run_inline = True

    def __init__(self) -> None:
        self.inputs: list[int] = []

    def on_chat_model_start(self, serialized: dict[str, Any],
                            messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.inputs.append(sum(len(m.text.split()) for m in messages[0]))


class Recorder:
    def __init__(self) -> None:
        self.models: list[tuple[str, str, str, int, int]] = []
        self.tools: list[tuple[str, str]] = []

    def model_call(self, provider: str, model: str, outcome: str, duration_seconds: float,
                   input_tokens: int, output_tokens: int) -> None:
        assert duration_seconds >= 0
        self.models.append((provider, model, outcome, input_tokens, output_tokens))

    def tool_call(self, tool: str, status: str) -> None:
        self.tools.append((tool, status))


def writer(path: str) -> dict[str, object]:
    return scripted({"content": f"writing {path}", "tool_calls": [
        {"name": "write_file", "args": {"file_path": path, "content": path}}]},
        {"content": f"wrote {path}"})


TEAM = definition(
    node("orchestrator", model=scripted(
        {"content": "both at once", "tool_calls": [
            {"name": "task", "args": {"subagent_type": "a", "description": "write /a"}},
            {"name": "task", "args": {"subagent_type": "b", "description": "write /b"}}]},
        {"content": "done"})),
    node("a", "Specialist", model=writer("/a")), node("b", "Specialist", model=writer("/b")))


def job(d: dict[str, Any], limits: dict[str, int] | None = None) -> Job:
    data: dict[str, Any] = {"job_id": f"usage-{uuid.uuid4().hex[:8]}", "trace_id": "t",
                            "agent_definition": d,
                            "input_payload": {"messages": [{"role": "user", "content": "go"}]}}
    if limits is not None:
        data["limits"] = limits
    return parse_job(data)


async def test_usage_counts_every_call_of_the_team_once_with_the_scripted_words() -> None:
    seen, recorder = WordsSeen(), Recorder()
    saver = InMemorySaver()
    runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry.load(),
                                    metrics=recorder, callbacks=lambda: [seen])
    the_job = job(TEAM)

    await runtime.run(the_job, EventLog())
    usage = await runtime.usage(the_job)
    # read again from the checkpoint alone (a fresh runtime remembers nothing)
    fresh = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry.load())
    from_checkpoint = await fresh.usage(the_job)

    assert from_checkpoint == usage
    assert usage.total.model_calls == 6  # 2 of the orchestrator, 2 of each specialist
    assert usage.total.output_tokens == 3 + 1 + 2 * (2 + 2)
    assert usage.total.input_tokens == sum(seen.inputs) and len(seen.inputs) == 6
    assert usage.to_data()["by_model"] == {"scripted:test": {
        "model_calls": 6, "input_tokens": sum(seen.inputs), "output_tokens": 12,
        "total_tokens": sum(seen.inputs) + 12}}
    assert [m[:3] for m in recorder.models] == [("scripted", "test", "success")] * 6
    assert sum(m[3] for m in recorder.models) == usage.total.input_tokens
    assert sorted(recorder.tools) == sorted([("task", "success")] * 2
                                            + [("write_file", "success")] * 2)


async def test_a_job_without_a_checkpoint_spent_nothing() -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load())
    usage = await runtime.usage(job(TEAM))
    assert usage.total.model_calls == 0 and usage.by_model == {}


@pytest.mark.parametrize("limits", [{"max_model_calls": 3}, {"max_total_tokens": 1}])
async def test_a_budget_stops_the_run_before_the_next_model_call(
        limits: dict[str, int]) -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load())
    the_job = job(TEAM, limits)

    with pytest.raises(BudgetExceeded) as raised:
        await runtime.run(the_job, EventLog())

    calls = ScriptedChatModel.calls.count(the_job.job_id)
    spent = await runtime.usage(the_job)
    assert calls == spent.total.model_calls
    assert calls == (3 if "max_model_calls" in limits else 1)
    assert f"after {calls} model call(s)" in raised.value.message
    assert not raised.value.retryable


async def test_the_default_budget_applies_unless_the_job_sets_its_own() -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load(),
                                    default_limits=Limits(max_model_calls=1))
    with pytest.raises(BudgetExceeded):
        await runtime.run(job(TEAM), EventLog())
    raised = job(TEAM, {"max_model_calls": 100})
    await runtime.run(raised, EventLog())
    assert (await runtime.usage(raised)).total.model_calls == 6
