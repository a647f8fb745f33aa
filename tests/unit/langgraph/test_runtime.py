"""LangGraphAgentRuntime on real compiled deep agents, scripted models, in-memory checkpoints."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.errors import GraphRecursionError

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.runtime import STEP_LIMIT, _translate
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.domain.errors import (
    DependencyUnavailable,
    InvalidAgentDefinition,
    StepLimitExceeded,
)
from agent_executor.domain.job import parse_job
from tests.unit.langgraph.conftest import (
    EventLog,
    Keys,
    definition,
    example,
    job_with,
    node,
    scripted,
)

SPECIALISTS = ("requirements-analyst", "architect")


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_the_team_example_writes_every_specialists_file_and_streams_everything(
        runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    job = parse_job(example("spec-builder", fresh_id("team")))

    output = await runtime.run(job, log)

    assert set(output.files) == {"/spec/requirements.md", "/spec/architecture.md"}
    assert output.files["/spec/requirements.md"].startswith("# Requirements")
    assert output.output == "The spec is ready: /spec/requirements.md and /spec/architecture.md."
    assert output.messages[0] == {"role": "user", "content": "Write the spec of a URL shortener"}
    assert output.messages[-1]["role"] == "assistant"

    streamed_by = {e["agent"] for e in log.of("on_llm_stream")}
    assert streamed_by == {"Orchestrator", *SPECIALISTS}
    words = [e["content"] for e in log.of("on_llm_stream") if e["agent"] == "architect"]
    assert words[:3] == ["Writing ", "the ", "architecture."]

    starts = {e["call_id"]: e for e in log.of("on_tool_start")}
    ends = {e["call_id"]: e for e in log.of("on_tool_end")}
    assert starts.keys() == ends.keys()
    assert len(starts) == len(log.of("on_tool_start"))  # call ids are unique
    for call_id, start in starts.items():
        assert ends[call_id]["tool"] == start["tool"]
        assert ends[call_id]["agent"] == start["agent"]
        assert ends[call_id]["status"] == "success"
    tools_by_agent = {(e["agent"], e["tool"]) for e in starts.values()}
    assert {("Orchestrator", "task"), ("Orchestrator", "write_todos"),
            ("requirements-analyst", "write_file"), ("architect", "write_file")} <= tools_by_agent
    task_inputs = [e["input"]["subagent_type"] for e in starts.values() if e["tool"] == "task"]
    assert task_inputs == list(SPECIALISTS)


async def test_state_updates_are_json_only(runtime: LangGraphAgentRuntime,
                                           log: EventLog) -> None:
    await runtime.run(parse_job(example("spec-builder", fresh_id("json"))), log)

    updates = log.of("on_state_update")
    assert {u["node"] for u in updates} >= {"model", "tools"}
    text = json.dumps([data for _, data in log.events])  # raises on anything not JSON
    for repr_marker in ("Message(", "content=", "FileData", "Command("):
        assert repr_marker not in text
    todos = [u["update"]["todos"] for u in updates if "todos" in u["update"]]
    assert todos[0][0] == {"content": "Requirements", "status": "in_progress"}
    files = [u["update"]["files"] for u in updates if "files" in u["update"]]
    assert any(f.get("/spec/architecture.md", "").startswith("# Architecture") for f in files)


async def test_a_finished_thread_is_returned_without_running_anything(
        runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    job = parse_job(example("hello", fresh_id("hello")))
    first = await runtime.run(job, EventLog())
    calls = ScriptedChatModel.calls.count(job.job_id)
    assert calls == 3

    again = await runtime.run(job, log)

    assert again == first
    assert ScriptedChatModel.calls.count(job.job_id) == calls
    assert log.events == []
    assert again.files == {"/hello.md": "# Hello\n\nHello, world!\n"}


async def test_a_script_in_the_event_is_refused_and_never_runs(
        tmp_path: Path, saver: InMemorySaver, runtime: LangGraphAgentRuntime,
        log: EventLog) -> None:
    marker = tmp_path / "script-ran"
    script = f"open({str(marker)!r}, 'w').write('ran')"
    d = definition(node("orchestrator", model=scripted(
        {"content": "calling it", "tool_calls": [{"name": "fetch", "args": {}}]})))
    d["tool_definitions"] = [{"name": "fetch", "description": "fetches",
                              "runtime": {"type": "python", "script": script}}]
    job = job_with(d, fresh_id("script"))

    with pytest.raises(InvalidAgentDefinition) as caught:
        await runtime.run(job, log)

    assert "tool_definitions[0].runtime.script" in caught.value.message
    assert "never executed" in caught.value.message
    assert not marker.exists()
    assert log.events == []
    assert ScriptedChatModel.calls.count(job.job_id) == 0
    assert await saver.aget_tuple({"configurable": {"thread_id": job.job_id}}) is None
    exec(compile(script, "proof", "exec"))  # the script itself works: it simply never ran
    assert marker.exists()


async def test_input_files_reach_the_agents_filesystem(runtime: LangGraphAgentRuntime,
                                                       log: EventLog) -> None:
    d = definition(node("orchestrator", model=scripted(
        {"content": "reading", "tool_calls": [{"name": "read_file",
                                               "args": {"file_path": "/notes.txt"}}]},
        {"content": "read it"})))
    job = job_with(d, fresh_id("files"), files={"/notes.txt": "remember the milk"})

    output = await runtime.run(job, log)

    assert output.files == {"/notes.txt": "remember the milk"}
    (end,) = log.of("on_tool_end")
    assert end["tool"] == "read_file" and "remember the milk" in end["output"]
    assert [m["role"] for m in output.messages].count("user") == 1


async def test_parallel_task_calls_each_get_their_pair(runtime: LangGraphAgentRuntime,
                                                       log: EventLog) -> None:
    def writer(path: str) -> dict[str, object]:
        return scripted({"content": f"writing {path}", "tool_calls": [
            {"name": "write_file", "args": {"file_path": path, "content": path}}]},
            {"content": f"wrote {path}"})
    d = definition(
        node("orchestrator", model=scripted(
            {"content": "both at once", "tool_calls": [
                {"name": "task", "args": {"subagent_type": "a", "description": "write /a"}},
                {"name": "task", "args": {"subagent_type": "b", "description": "write /b"}}]},
            {"content": "done"})),
        node("a", "Specialist", model=writer("/a")), node("b", "Specialist", model=writer("/b")))

    output = await runtime.run(job_with(d, fresh_id("parallel")), log)

    assert output.files == {"/a": "/a", "/b": "/b"}
    task_ends = [e for e in log.of("on_tool_end") if e["tool"] == "task"]
    assert len(task_ends) == 2
    assert {e["call_id"] for e in task_ends} == {
        e["call_id"] for e in log.of("on_tool_start") if e["tool"] == "task"}
    assert {e["agent"] for e in log.of("on_llm_stream")} == {"orchestrator", "a", "b"}


async def test_specialists_have_the_todo_list_and_the_whole_filesystem(
        runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    file_tools = [
        {"name": "write_todos", "args": {"todos": [{"content": "check", "status": "pending"}]}},
        {"name": "ls", "args": {"path": "/"}},
        {"name": "read_file", "args": {"file_path": "/x.md"}},
        {"name": "edit_file", "args": {"file_path": "/x.md", "old_string": "draft",
                                       "new_string": "final"}},
        {"name": "glob", "args": {"pattern": "*.md"}},
        {"name": "grep", "args": {"pattern": "draft"}},
    ]
    d = definition(
        node("orchestrator", model=scripted(
            {"content": "delegating", "tool_calls": [
                {"name": "task", "args": {"subagent_type": "editor", "description": "edit"}}]},
            {"content": "done"})),
        node("editor", "Specialist", model=scripted(
            {"content": "drafting", "tool_calls": [
                {"name": "write_file", "args": {"file_path": "/x.md", "content": "draft"}}]},
            {"content": "using everything", "tool_calls": file_tools},
            {"content": "edited"})))

    output = await runtime.run(job_with(d, fresh_id("builtins")), log)

    ends = {e["tool"]: e for e in log.of("on_tool_end") if e["agent"] == "editor"}
    assert set(ends) == {"write_file", *(t["name"] for t in file_tools)}
    assert all(e["status"] == "success" for e in ends.values()), ends
    assert output.files == {"/x.md": "final"}


async def test_a_failing_checkpoint_store_is_a_dependency_failure(tmp_path: Path,
                                                                  log: EventLog) -> None:
    path = tmp_path / "checkpoints.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        runtime = LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry())
        with pytest.raises(DependencyUnavailable) as caught:
            await runtime.run(parse_job(example("hello", fresh_id("store"))), log)
    assert "checkpoint store failed" in str(caught.value)


LOOP = scripted({"content": "again", "tool_calls": [{"name": "ls", "args": {"path": "/"}}]})


@pytest.mark.parametrize("looping", ["orchestrator", "specialist"])
async def test_an_agent_calling_tools_for_ever_stops_at_the_step_limit(
        runtime: LangGraphAgentRuntime, log: EventLog, looping: str) -> None:
    if looping == "orchestrator":
        d = definition(node("orchestrator", model=LOOP))
    else:
        d = definition(
            node("orchestrator", model=scripted(
                {"content": "delegating", "tool_calls": [
                    {"name": "task", "args": {"subagent_type": "w", "description": "go"}}]},
                {"content": "done"})),
            node("w", "Specialist", model=LOOP))
    job = job_with(d, fresh_id("loop"))
    started = time.monotonic()

    with pytest.raises(StepLimitExceeded) as caught:
        await asyncio.wait_for(runtime.run(job, log), timeout=60)

    assert f"step limit of {STEP_LIMIT} steps" in caught.value.message
    assert caught.value.error_type == "StepLimitExceeded"
    assert caught.value.retryable is False
    agent = "orchestrator" if looping == "orchestrator" else "w"
    assert 10 < ScriptedChatModel.calls.count(job.job_id, agent) < STEP_LIMIT
    assert time.monotonic() - started < 30


def test_the_librarys_recursion_error_is_the_step_limit_too() -> None:
    job = job_with(definition(), "recursion")
    error = _translate(GraphRecursionError("Recursion limit of 7 reached"), job, 7)
    assert isinstance(error, StepLimitExceeded)
    assert "step limit of 7 steps" in error.message
