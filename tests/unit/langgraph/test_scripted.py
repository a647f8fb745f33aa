"""The scripted model of CONTRACT section 3."""

from __future__ import annotations

import time

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from agent_executor.adapters.langgraph.scripted import ScriptedCallLog, ScriptedChatModel
from agent_executor.adapters.langgraph.spec import ScriptedReply, ScriptedToolCall

REPLIES = (
    ScriptedReply("Let me write it.", (ScriptedToolCall("write_file", {"file_path": "/a"}),
                                       ScriptedToolCall("ls", {}))),
    ScriptedReply("Written."),
    ScriptedReply("Anything else?"),
)


def model(agent: str = "writer", delay_ms: int = 0) -> ScriptedChatModel:
    return ScriptedChatModel(agent=agent, replies=REPLIES, delay_ms=delay_ms)


def turn(n: int) -> list[BaseMessage]:
    messages: list[BaseMessage] = [HumanMessage("write /a")]
    for i in range(n):
        messages += [AIMessage(f"answer {i}"), ToolMessage("ok", tool_call_id=f"c{i}")]
    return messages


async def test_the_answer_is_chosen_by_the_ai_messages_already_there() -> None:
    m = model()
    assert (await m.ainvoke(turn(0))).content == "Let me write it."
    assert (await m.ainvoke(turn(1))).content == "Written."
    assert (await m.ainvoke(turn(2))).content == "Anything else?"
    assert (await m.ainvoke(turn(7))).content == "Anything else?"  # past the end: the last


async def test_it_streams_word_by_word_and_the_tool_calls_last() -> None:
    chunks = [c async for c in model().astream(turn(0))]
    assert [c.content for c in chunks[:-1]] == ["Let ", "me ", "write ", "it."]
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.content == "Let me write it."
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("write_file", {"file_path": "/a"}), ("ls", {})]


async def test_tool_call_ids_are_stable_and_distinct() -> None:
    first = await model().ainvoke(turn(0))
    again = await model().ainvoke(turn(0))
    other_agent = await model("reviewer").ainvoke(turn(0))
    ids = [c["id"] for c in first.tool_calls]
    assert ids == [c["id"] for c in again.tool_calls]
    assert len(set(ids)) == 2
    assert not set(ids) & {c["id"] for c in other_agent.tool_calls}


async def test_it_sleeps_delay_ms_before_each_answer() -> None:
    started = time.perf_counter()
    await model(delay_ms=60).ainvoke(turn(1))
    assert time.perf_counter() - started >= 0.06


def test_it_accepts_tools_and_answers_synchronously() -> None:
    @tool
    def noop() -> str:
        """Nothing."""
        return ""

    bound = model().bind_tools([noop])
    assert bound.invoke(turn(1)).content == "Written."


def test_the_call_log_is_bounded() -> None:
    log = ScriptedCallLog(max_threads=2)
    for thread in ("a", "b", "c"):
        log.record(thread, "writer")
    log.record("c", "writer")
    assert (log.count("a"), log.count("b"), log.count("c"), log.count("c", "writer")) == (
        0, 1, 2, 2)
