"""The domain boundary (CONTRACT section 2): ids that cannot collide, strings every store
can hold, nesting a reader can walk, and messages LangChain accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import ToolMessage, convert_to_messages
from nats.aio.client import Client

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.nats.codec import MSG_ID_HEADER, result_message
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import MAX_JSON_DEPTH, json_problems, parse_job
from agent_executor.domain.result import AgentOutput, JobResult

JOB: dict[str, Any] = {"job_id": "job-1", "trace_id": "trace-1", "agent_definition": {},
                       "input_payload": {"messages": [{"role": "user", "content": "hi"}]}}


def job(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(JOB)
    data.update(changes)
    return data


def refusal(data: Any) -> str:
    with pytest.raises(InvalidJob) as refused:
        parse_job(data)
    return " ".join(refused.value.details)


@pytest.mark.parametrize("field", ["job_id", "trace_id"])
@pytest.mark.parametrize(("value", "needle"), [
    (" victim", "leading or trailing whitespace"), ("victim ", "leading or trailing"),
    ("victim\r\n", "control character (U+000D)"), ("vic\ntim", "control character (U+000A)"),
    ("victim\t", "control character (U+0009)"), ("a\x00b", "U+0000"),
    ("a\x7f", "control character (U+007F)"), ("\u00a0victim", "leading or trailing"),
    ("a\udc80", "lone surrogate"), ("", "must not be empty"), ("x" * 201, "longer than 200"),
])
def test_ids_break_the_contract_rules_are_refused_naming_the_field(
        field: str, value: str, needle: str) -> None:
    details = refusal(job(**{field: value}))
    assert f"data.{field}:" in details and needle in details, details


def _msg_id_as_received(job_id: str) -> str:
    """The result's Nats-Msg-Id after the trip through a NATS header block: written as
    `Name: value\\r\\n`, read back by the client's own parser (which strips, and splits
    on CR LF), as the server and every subscriber see it."""
    message = result_message(JobResult.completed(job_id, "t", 1, AgentOutput("ok"), 1),
                             EventNames(), "agent.status")
    raw = f"{MSG_ID_HEADER}: {message.headers[MSG_ID_HEADER]}\r\n".encode()
    return Client._parse_header_lines(raw).get(MSG_ID_HEADER, "")


def test_ids_that_would_collide_in_a_header_are_refused() -> None:
    victim = "victim"
    for forged in (" victim", "\tvictim", "victim:completed\r\n",
                   "z\r\nNats-Msg-Id: victim"):
        # The attack: without the rule, the forged job's Msg-Id is the victim's.
        assert _msg_id_as_received(forged) == _msg_id_as_received(victim)
        with pytest.raises(InvalidJob):
            parse_job(job(job_id=forged))
    assert parse_job(job(job_id=victim)).job_id == victim


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_two_accepted_ids_never_share_a_msg_id(a: str, b: str) -> None:
    accepted = []
    for candidate in (a, b):
        try:
            accepted.append(parse_job(job(job_id=candidate)).job_id)
        except InvalidJob:
            pass
    for job_id in accepted:  # the header trip is the identity on accepted ids
        assert _msg_id_as_received(job_id) == f"{job_id}:completed"
    if len(accepted) == 2 and a != b:
        assert _msg_id_as_received(a) != _msg_id_as_received(b)


@pytest.mark.parametrize(("data", "path"), [
    (job(input_payload={"messages": [{"role": "user", "content": "a\x00b"}]}),
     "data.input_payload.messages[0].content: holds U+0000"),
    (job(input_payload={"messages": [{"role": "user", "content": "\ud800"}]}),
     "data.input_payload.messages[0].content: holds a lone surrogate (U+D800)"),
    (job(agent_definition={"nodes": [{"config": {"tools": ["a\x00"]}}]}),
     "data.agent_definition.nodes[0].config.tools[0]: holds U+0000"),
    (job(agent_definition={"k\udfff": 1}), "data.agent_definition: a key holds a lone"),
    (job(input_payload={"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "name": "write_file", "args": {"content": "\x00"}}]}]}),
     "tool_calls[0].args.content: holds U+0000"),
])
def test_nul_and_lone_surrogates_anywhere_are_refused_naming_the_path(
        data: dict[str, Any], path: str) -> None:
    assert path in refusal(data)


def test_nesting_is_bounded_and_walked_without_recursion() -> None:
    deep: Any = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    problems = json_problems({"x": deep}, "data")
    assert len(problems) == 1 and f"nested deeper than {MAX_JSON_DEPTH} levels" in problems[0]
    ok: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH):  # the document itself is level 1
        ok = [ok]
    assert json_problems(ok, "data") == []
    assert json_problems([ok], "data") != []


@pytest.mark.parametrize(("messages", "needle"), [
    ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id: required"),
    ([{"role": "tool", "content": "x", "tool_call_id": "c9"}], "no earlier assistant"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"name": "ls", "args": {}}]}],
     "tool_calls[0].id: required"),
    ([{"role": "assistant", "content": "", "tool_calls": "ls"}], "tool_calls: expected a list"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "name": "ls",
                                                          "args": []}]}], "args: expected"),
    ([{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "ls", "arguments": "{bad"}}]}],
     "function.arguments"),
    ([{"role": "user", "content": [1]}], "content[0]: expected a string or an object"),
    ([{"role": "user", "content": "x", "name": 5}], "messages[0].name: expected a string"),
    ([{"role": "user", "content": "x", "additional_kwargs": 5}], "unknown key(s)"),
    ([{"role": "user", "content": "x", "tool_calls": []}], "unknown key(s) 'tool_calls'"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "name": "ls"}]},
      {"role": "tool", "content": "x", "tool_call_id": "c", "status": "weird"}], "status"),
])
def test_messages_langchain_would_reject_are_refused_naming_the_field(
        messages: list[Any], needle: str) -> None:
    details = refusal(job(input_payload={"messages": messages}))
    assert needle in details and "data.input_payload.messages[" in details, details


def test_a_tool_exchange_in_either_shape_is_accepted() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "name": "ls", "args": {}},
            {"id": "c2", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
        {"role": "tool", "content": "[]", "tool_call_id": "c1"},
        {"role": "tool", "content": [{"type": "text", "text": "[]"}], "tool_call_id": "c2",
         "status": "error", "name": "ls"}]
    parsed = parse_job(job(input_payload={"messages": messages}))
    converted = convert_to_messages([dict(m) for m in parsed.messages])
    assert [type(m).__name__ for m in converted][-2:] == ["ToolMessage", "ToolMessage"]
    assert isinstance(converted[-1], ToolMessage) and converted[-1].tool_call_id == "c2"


_ANY = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.lists(
    st.text(max_size=3), max_size=2) | st.dictionaries(st.text(max_size=4), st.text(max_size=3),
                                                       max_size=2)
_call = st.dictionaries(st.sampled_from(["id", "name", "args", "type", "function", "x"]),
                        _ANY | st.fixed_dictionaries({"name": _ANY, "arguments": _ANY}),
                        max_size=5)
_message = st.dictionaries(
    st.sampled_from(["role", "content", "name", "id", "tool_calls", "tool_call_id", "status",
                     "additional_kwargs", "type"]),
    st.sampled_from(["user", "assistant", "ai", "tool", "system", "human", "c1", "success"])
    | _ANY | st.lists(_call, max_size=2) | st.lists(
        st.text(max_size=3) | st.fixed_dictionaries({"type": _ANY}), max_size=2),
    max_size=6)


@settings(max_examples=1500)
@given(st.lists(_message, min_size=1, max_size=4))
def test_whatever_the_validator_accepts_langchain_reads(messages: list[Any]) -> None:
    try:
        parsed = parse_job(job(input_payload={"messages": messages}))
    except InvalidJob as exc:
        assert exc.details and all("data." in d for d in exc.details)
        return
    convert_to_messages([dict(m) for m in parsed.messages])  # must not raise
