"""Human in the loop on the real runtime: deepagents' HITL middleware pauses before a
gated tool; approve, edit and reject continue the thread (CONTRACT section 2a)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent_executor.adapters.langgraph import LangGraphAgentRuntime
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.domain.errors import InvalidAgentDefinition, InvalidRequest
from agent_executor.domain.interrupts import Decision, Interrupt, Resume, read_decisions
from agent_executor.domain.job import Job
from agent_executor.domain.result import AgentOutput
from tests.unit.langgraph.conftest import EventLog, definition, job_with, node, scripted

WRITE = {"name": "write_file", "args": {"file_path": "/a.md", "content": "hi"}}


def gated_job(interrupt_on: Any = True, *, calls: list[dict[str, Any]] | None = None) -> Job:
    model = scripted({"content": "writing", "tool_calls": calls or [WRITE]},
                     {"content": "done"})
    rule = interrupt_on if isinstance(interrupt_on, dict) else {"write_file": interrupt_on}
    return job_with(definition(node("orchestrator", model=model, interrupt_on=rule)),
                    job_id=f"hitl-{uuid.uuid4().hex[:8]}")


def delegating_job() -> Job:
    """The orchestrator delegates to a writer whose write_file is gated."""
    delegate = {"name": "task", "args": {"description": "write it", "subagent_type": "writer"}}
    writer = scripted({"content": "writing", "tool_calls": [WRITE]}, {"content": "wrote"})
    return job_with(definition(
        node("orchestrator", model=scripted({"content": "delegating", "tool_calls": [delegate]},
                                            {"content": "done"})),
        node("writer", "Specialist", model=writer, interrupt_on={"write_file": True})),
        job_id=f"hitl-{uuid.uuid4().hex[:8]}")


async def paused(runtime: LangGraphAgentRuntime, job: Job, log: EventLog) -> Interrupt:
    outcome = await runtime.run(job, log)
    assert isinstance(outcome, Interrupt), outcome
    return outcome


async def test_a_gated_tool_pauses_before_it_runs(runtime: LangGraphAgentRuntime,
                                                  log: EventLog) -> None:
    job = gated_job()
    interrupt = await paused(runtime, job, log)
    assert interrupt.agent == "orchestrator"
    [request] = interrupt.requests
    assert (request.tool, dict(request.input)) == ("write_file", WRITE["args"])
    assert request.allowed_decisions == ("approve", "edit", "reject")
    assert request.call_id == log.of("on_tool_start")[0]["call_id"]
    assert not log.of("on_tool_end"), "the gated tool ran before a decision"
    # run again without decisions (a restarted worker): the same pause, nothing run
    again = await paused(runtime, job, EventLog())
    assert again == interrupt
    assert ScriptedChatModel.calls.count(job.job_id) == 1


@pytest.mark.parametrize(("decision", "files"), [
    (Decision("approve"), {"/a.md": "hi"}),
    (Decision("edit", input={"file_path": "/b.md", "content": "edited"}), {"/b.md": "edited"}),
    (Decision("reject", message="not that file"), {}),
])
async def test_each_decision_gives_its_outcome(runtime: LangGraphAgentRuntime, log: EventLog,
                                               decision: Decision,
                                               files: dict[str, str]) -> None:
    job = gated_job()
    interrupt = await paused(runtime, job, log)
    outcome = await runtime.run(job, log, Resume(interrupt.interrupt_id, (decision,)))
    assert isinstance(outcome, AgentOutput)
    assert dict(outcome.files) == files
    assert outcome.output == "done"
    ends = log.of("on_tool_end")
    assert [e["status"] for e in ends] == (["error"] if decision.type == "reject"
                                           else ["success"])
    if decision.type == "reject":
        assert "not that file" in ends[0]["output"]
    assert ScriptedChatModel.calls.count(job.job_id) == 2
    # the user's input is once in the thread
    assert [m["content"] for m in outcome.messages if m["role"] == "user"] == ["go"]


async def test_a_resume_for_another_interrupt_pauses_again(runtime: LangGraphAgentRuntime,
                                                           log: EventLog) -> None:
    job = gated_job()
    interrupt = await paused(runtime, job, log)
    again = await runtime.run(job, log, Resume("not-the-id", (Decision("approve"),)))
    assert again == interrupt


async def test_allowed_decisions_and_batched_calls(runtime: LangGraphAgentRuntime,
                                                   log: EventLog) -> None:
    second = {"name": "write_file", "args": {"file_path": "/c.md", "content": "c"}}
    job = gated_job({"write_file": {"allowed_decisions": ["approve", "reject"]}},
                    calls=[WRITE, second])
    interrupt = await paused(runtime, job, log)
    assert [r.input["file_path"] for r in interrupt.requests] == ["/a.md", "/c.md"]
    assert {r.allowed_decisions for r in interrupt.requests} == {("approve", "reject")}
    with pytest.raises(InvalidRequest, match="not allowed"):
        read_decisions([{"type": "edit", "input": {}}, {"type": "approve"}], interrupt)
    with pytest.raises(InvalidRequest, match="1 given, 2 expected"):
        read_decisions([{"type": "approve"}], interrupt)
    decisions = read_decisions([{"type": "approve"}, {"type": "reject"}], interrupt)
    outcome = await runtime.run(job, log, Resume(interrupt.interrupt_id, decisions))
    assert isinstance(outcome, AgentOutput)
    assert dict(outcome.files) == {"/a.md": "hi"}


async def test_a_specialists_gated_tool_pauses_the_job(runtime: LangGraphAgentRuntime,
                                                       log: EventLog) -> None:
    job = delegating_job()
    interrupt = await paused(runtime, job, log)
    assert interrupt.agent == "writer"
    assert interrupt.requests[0].call_id  # the specialist's own call id
    outcome = await runtime.run(job, log, Resume(interrupt.interrupt_id, (Decision("approve"),)))
    assert isinstance(outcome, AgentOutput)
    assert dict(outcome.files) == {"/a.md": "hi"}
    assert ScriptedChatModel.calls.count(job.job_id, "writer") == 2


async def test_the_orchestrators_rule_is_not_inherited(runtime: LangGraphAgentRuntime,
                                                       log: EventLog) -> None:
    delegate = {"name": "task", "args": {"description": "write it", "subagent_type": "writer"}}
    writer = scripted({"content": "writing", "tool_calls": [WRITE]}, {"content": "wrote"})
    job = job_with(definition(
        node("orchestrator", model=scripted({"content": "delegating", "tool_calls": [delegate]},
                                            {"content": "done"}),
             interrupt_on={"write_file": True}),
        node("writer", "Specialist", model=writer)), job_id=f"hitl-{uuid.uuid4().hex[:8]}")
    outcome = await runtime.run(job, log)
    assert isinstance(outcome, AgentOutput)
    assert dict(outcome.files) == {"/a.md": "hi"}


@pytest.mark.parametrize(("rule", "problem"), [
    ({"delete_everything": True}, "interrupt_on.delete_everything: the node has no tool"),
    ({"write_file": {"allowed_decisions": ["maybe"]}}, "interrupt_on.write_file: expected"),
    ({"write_file": {"allowed_decisions": []}}, "interrupt_on.write_file: expected"),
    (["write_file"], "interrupt_on: expected an object"),
])
async def test_a_bad_interrupt_on_is_an_invalid_definition(
        runtime: LangGraphAgentRuntime, log: EventLog, rule: Any, problem: str) -> None:
    job = job_with(definition(node("orchestrator", interrupt_on=rule)))
    with pytest.raises(InvalidAgentDefinition, match=problem.replace(".", r"\.")):
        await runtime.run(job, log)


async def test_usage_is_summed_over_an_interrupt_and_its_resume(
        runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    job = delegating_job()
    interrupt = await paused(runtime, job, log)
    while_paused = await runtime.usage(job)  # from the checkpoint: nothing remembered
    await runtime.run(job, log, Resume(interrupt.interrupt_id, (Decision("approve"),)))
    after = await runtime.usage(job)

    # paused: the orchestrator's first call (the writer's is in its own, paused, run)
    assert while_paused.total.model_calls == 1
    assert after.total.model_calls == 4  # two of the orchestrator, two of the writer
    assert after.total.output_tokens == len("delegating writing wrote done".split())
    assert after.total.input_tokens > while_paused.total.input_tokens
