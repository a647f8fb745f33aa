"""A run killed mid-way resumes from its checkpoint: the input once, completed steps not re-run.

The "crash" cancels the run in the middle of a step: inside the model call that
follows a chosen event, held there by the scripted model's test hook
(`ScriptedChatModel.calls.hold`), so no timing decides where it lands. Then a
new runtime on a new connection to the same SQLite checkpoint file (a restarted
process) runs the job again.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.domain.job import Job, parse_job
from tests.unit.langgraph.conftest import EventLog, Keys, example

# Answers each agent gives in a complete run of the team example.
TURNS = {"Orchestrator": 4, "requirements-analyst": 2, "architect": 2}

Trigger = Callable[[str, Mapping[str, Any]], bool]


def tool_started(agent: str, tool: str) -> Trigger:
    return lambda kind, data: (kind == "on_tool_start" and data["agent"] == agent
                               and data["tool"] == tool)


def team_job(delay_ms: int) -> Job:
    data = example("spec-builder", f"resume-{uuid.uuid4().hex[:8]}")
    data = copy.deepcopy(data)
    for n in data["agent_definition"]["nodes"]:
        n["config"]["model"]["delay_ms"] = delay_ms
    return parse_job(data)


DELAY_MS = 0  # where the crash lands is decided by the hook, not by timing


async def crash_after(trigger: Trigger, job: Job, path: Path) -> EventLog:
    """Run until `trigger` matches an event, then kill the run inside the next model call
    (held there by the scripted model's hook: it has begun and given no answer)."""
    reached = asyncio.Event()
    in_next_call = asyncio.Event()
    log = EventLog()

    async def sink(kind: str, data: Mapping[str, Any]) -> None:
        await log(kind, data)
        if trigger(kind, data):
            reached.set()

    async def hold(agent: str) -> None:
        if reached.is_set():
            in_next_call.set()
            await asyncio.Event().wait()  # stays in the call until the crash

    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        with ScriptedChatModel.calls.hold(job.job_id, hold):
            before = asyncio.all_tasks()
            run = asyncio.create_task(runtime.run(job, sink))
            waiter = asyncio.create_task(in_next_call.wait())
            done, _ = await asyncio.wait({run, waiter}, timeout=30,
                                         return_when=asyncio.FIRST_COMPLETED)
            assert waiter in done and run not in done, "the run ended before the crash point"
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            # LangGraph stores a step's writes in tasks of their own, which outlive the
            # cancelled run: let them end before the file is closed, as writes a dead
            # process had finished. Left running, they race the close and the next
            # run's writes: the likely cause of a "database is locked" CI drew.
            stragglers = asyncio.all_tasks() - before - {run, waiter}
            await asyncio.wait_for(asyncio.gather(*stragglers, return_exceptions=True), 30)
    return log


@pytest.mark.parametrize("crash_point", [
    tool_started("Orchestrator", "write_todos"),
    tool_started("requirements-analyst", "write_file"),
    tool_started("Orchestrator", "task"),
    tool_started("architect", "write_file"),
], ids=["orchestrator-turn-1", "inside-first-specialist", "after-first-task", "inside-second"])
async def test_a_crashed_run_resumes_without_repeating_input_or_completed_steps(
        tmp_path: Path, crash_point: Trigger) -> None:
    path = tmp_path / "checkpoints.sqlite"
    job = team_job(delay_ms=DELAY_MS)
    before = await crash_after(crash_point, job, path)
    calls_before = {agent: ScriptedChatModel.calls.count(job.job_id, agent) for agent in TURNS}
    assert 0 < sum(calls_before.values()) < sum(TURNS.values())

    after = EventLog()
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        output = await runtime.run(job, after)

    assert set(output.files) == {"/spec/requirements.md", "/spec/architecture.md"}
    user_messages = [m for m in output.messages if m["role"] == "user"]
    assert user_messages == [{"role": "user", "content": "Write the spec of a URL shortener"}]
    # Every answer was given exactly once across both runs: nothing that had
    # completed ran again.
    assert {agent: ScriptedChatModel.calls.count(job.job_id, agent) for agent in TURNS} == TURNS
    # Tool calls started before the crash end after the resume, under the same call_id.
    started = {e["call_id"] for e in before.of("on_tool_start") + after.of("on_tool_start")}
    ended = {e["call_id"] for e in before.of("on_tool_end") + after.of("on_tool_end")}
    assert started == ended
    # Tokens already streamed are not streamed again.
    text_before = "".join(e["content"] for e in before.of("on_llm_stream"))
    text_after = "".join(e["content"] for e in after.of("on_llm_stream"))
    assert "I will plan the spec" in text_before
    assert "I will plan the spec" not in text_after


async def test_a_resume_before_any_checkpoint_starts_afresh(tmp_path: Path) -> None:
    job = team_job(delay_ms=0)
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "c.sqlite")) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        output = await runtime.run(job, EventLog())
        assert {a: ScriptedChatModel.calls.count(job.job_id, a) for a in TURNS} == TURNS
        assert await runtime.run(job, EventLog()) == output
    assert {a: ScriptedChatModel.calls.count(job.job_id, a) for a in TURNS} == TURNS


CHILD = """
import asyncio, json, sys
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.domain.job import parse_job
from tests.unit.langgraph.conftest import Keys

async def main() -> None:
    job = parse_job(json.loads(sys.argv[2]))
    async def emit(kind, data):
        print(json.dumps([kind, data]), flush=True)
    async def hold(agent):  # announce each model call, then wait to be let through
        print(json.dumps(["model_call", {"agent": agent}]), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    async with AsyncSqliteSaver.from_conn_string(sys.argv[1]) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        with ScriptedChatModel.calls.hold(job.job_id, hold):
            await runtime.run(job, emit)

asyncio.run(main())
"""


async def test_a_killed_process_resumes_in_another(tmp_path: Path) -> None:
    """SIGKILL: no cleanup of any kind runs in the dying process."""
    path = tmp_path / "checkpoints.sqlite"
    job = team_job(delay_ms=DELAY_MS)
    trigger = tool_started("requirements-analyst", "write_file")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), json.dumps(job.to_data()),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3])
    assert child.stdout is not None and child.stdin is not None
    reached = False
    while True:
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        assert line, "the child ended before the crash point"
        kind, data = json.loads(line)
        if kind == "model_call":
            if reached:  # the child is inside the next model call: kill it there
                break
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        reached = reached or trigger(kind, data)
    child.kill()
    await child.wait()

    after = EventLog()
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        output = await runtime.run(job, after)

    assert set(output.files) == {"/spec/requirements.md", "/spec/architecture.md"}
    assert [m for m in output.messages if m["role"] == "user"] == [
        {"role": "user", "content": "Write the spec of a URL shortener"}]
    # This process answered only the turns the killed one had not finished.
    assert {a: ScriptedChatModel.calls.count(job.job_id, a) for a in TURNS} == {
        "Orchestrator": 2, "requirements-analyst": 1, "architect": 2}
    assert "Writing the requirements" not in "".join(
        e["content"] for e in after.of("on_llm_stream"))


@pytest.mark.parametrize("crash_point", [
    tool_started("Orchestrator", "write_todos"),
    tool_started("requirements-analyst", "write_file"),
    tool_started("architect", "write_file"),
], ids=["orchestrator-turn-1", "inside-first-specialist", "inside-second"])
async def test_usage_is_summed_from_the_checkpoint_over_a_crash_and_resume(
        tmp_path: Path, crash_point: Trigger) -> None:
    whole = team_job(delay_ms=DELAY_MS)
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "whole.sqlite")) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        await runtime.run(whole, EventLog())
        uninterrupted = await runtime.usage(whole)

    path = tmp_path / "checkpoints.sqlite"
    job = team_job(delay_ms=DELAY_MS)
    await crash_after(crash_point, job, path)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:  # a new process
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        await runtime.run(job, EventLog())
        resumed = await runtime.usage(job)
        reread = await LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry()).usage(job)

    assert uninterrupted.total.model_calls == sum(TURNS.values())
    assert resumed == uninterrupted == reread  # every call once, tokens alike
