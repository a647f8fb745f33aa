"""The CloudEvents NATS binding (v1.0.3): content modes, ce- headers, percent-encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_executor.adapters.cloudevents_codec import EventNames, read_job
from agent_executor.adapters.nats.codec import (
    binary_headers,
    decode_header_value,
    encode_header_value,
    http_binding_headers,
    is_structured,
    job_identity,
    read_nats_job,
    result_message,
)
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.result import AgentOutput, ErrorInfo, JobResult

NAMES = EventNames()
JOB = {"job_id": "job-1", "trace_id": "trace-1", "agent_definition": {"name": "a"},
       "input_payload": {"messages": [{"role": "user", "content": "hi"}]}}
ATTRIBUTES = {"specversion": "1.0", "id": "evt-1", "source": "/producer",
              "type": "dev.my-platform.agent.execute", "datacontenttype": "application/json"}


def _structured(**overrides: Any) -> bytes:
    return json.dumps({**ATTRIBUTES, "data": JOB, **overrides}).encode()


def test_encoding_follows_the_binding_example_and_escapes_what_it_must() -> None:
    assert encode_header_value("Euro \u20ac \U0001f600") == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert encode_header_value('say "100%"') == "say%20%22100%25%22"
    assert encode_header_value("a\tb\x7f") == "a%09b%7F"
    assert encode_header_value("/path?x=1&y=[2]") == "/path?x=1&y=[2]"


def test_decoding_accepts_lower_case_needless_escapes_and_quoted_strings() -> None:
    assert decode_header_value("Euro%20%e2%82%ac") == "Euro \u20ac"
    assert decode_header_value("%41%42C") == "ABC"
    assert decode_header_value('"a \\"quoted\\" value"') == 'a "quoted" value'
    assert decode_header_value('"100%25"') == "100%"


def test_decoding_rejects_invalid_utf8_such_as_an_overlong_space() -> None:
    with pytest.raises(ValueError):
        decode_header_value("%C0%A0")
    with pytest.raises(ValueError):
        decode_header_value("%FF")


@given(st.text())
def test_header_values_round_trip(value: str) -> None:
    encoded = encode_header_value(value)
    assert all(0x21 <= ord(c) <= 0x7E and c not in ' "' for c in encoded)
    assert decode_header_value(encoded) == value


@pytest.mark.parametrize(("headers", "body", "structured"), [
    ({"Content-Type": "application/cloudevents+json"}, b"{}", True),
    ({"content-type": "APPLICATION/CLOUDEVENTS+JSON; charset=utf-8"}, b"{}", True),
    ({"Content-Type": "application/cloudevents+json", "ce-id": "x"}, b"{}", True),
    ({"ce-specversion": "1.0", "Content-Type": "application/json"}, _structured(), False),
    ({}, _structured(), True),
    ({}, b'{"job_id": "x"}', False),
    ({}, b"not json", False),
])
def test_content_mode_detection(headers: dict[str, str], body: bytes, structured: bool) -> None:
    assert is_structured(headers, body) is structured


def test_structured_job_by_content_type_or_by_body() -> None:
    job = read_nats_job({"Content-Type": "application/cloudevents+json"}, _structured(), NAMES)
    assert (job.job_id, job.trace_id) == ("job-1", "trace-1")
    assert read_nats_job(None, _structured(), NAMES).job_id == "job-1"


def test_binary_job_maps_ce_datacontenttype_and_decodes_values() -> None:
    headers = binary_headers({**ATTRIBUTES, "source": "/my producer/\u00e9"})
    assert headers["ce-datacontenttype"] == "application/json"
    assert headers["ce-source"] == "/my%20producer/%C3%A9"
    job = read_nats_job(headers, json.dumps(JOB).encode(), NAMES)
    assert job.job_id == "job-1" and job.messages == [{"role": "user", "content": "hi"}]


def test_binary_headers_become_canonical_http_binding_headers() -> None:
    http = http_binding_headers({"CE-Subject": '"100% sure"', "ce-datacontenttype":
                                 "application/json", "Nats-Msg-Id": "x", "ce-id": "a%2fb"})
    assert http == {"ce-subject": "100%25%20sure", "content-type": "application/json",
                    "ce-id": "a/b"}


def test_binary_mode_accepts_content_type_when_ce_datacontenttype_is_missing() -> None:
    attributes = {k: v for k, v in ATTRIBUTES.items() if k != "datacontenttype"}
    headers = {**binary_headers(attributes), "Content-Type": "application/json"}
    assert read_nats_job(headers, json.dumps(JOB).encode(), NAMES).job_id == "job-1"


@pytest.mark.parametrize(("headers", "body", "detail"), [
    (binary_headers({**ATTRIBUTES, "type": "other.type"}), json.dumps(JOB).encode(), "type"),
    ({**binary_headers(ATTRIBUTES), "ce-id": "%C0%A0"}, json.dumps(JOB).encode(), "ce-id"),
    (binary_headers(ATTRIBUTES), b"{not json", "JSON"),
    ({"Content-Type": "application/cloudevents+json"}, b"[1, 2]", "object"),
    ({}, b"hello", "not a CloudEvent"),
    ({"Content-Type": "application/cloudevents+json"},
     _structured(data={**JOB, "job_id": 7}), "data.job_id"),
])
def test_invalid_messages_raise_invalid_job(headers: dict[str, str], body: bytes,
                                            detail: str) -> None:
    with pytest.raises(InvalidJob) as raised:
        read_nats_job(headers, body, NAMES)
    assert detail in raised.value.message + " ".join(raised.value.details)


@pytest.mark.parametrize(("headers", "body", "identity"), [
    ({"Content-Type": "application/cloudevents+json"},
     _structured(type="wrong", data={"job_id": "job-9", "trace_id": "t"}), ("job-9", "t")),
    (binary_headers(ATTRIBUTES), b'{"job_id": "job-8", "agent_definition": 3}', ("job-8", "")),
    ({}, b'{"job_id": 5}', None),
    ({}, b'{"job_id": ""}', None),
    ({}, b"\xff\xfe", None),
    ({}, b"[]", None),
])
def test_job_identity_of_invalid_messages(headers: dict[str, str], body: bytes,
                                          identity: tuple[str, str] | None) -> None:
    assert job_identity(headers, body) == identity


def test_result_message_is_structured_on_the_status_subject_with_a_msg_id() -> None:
    completed = JobResult.completed("job-1", "trace-1", 1, AgentOutput("done"), 12)
    message = result_message(completed, NAMES, "agent.status")
    assert message.subject == "agent.status.completed"
    assert message.headers == {"Content-Type": "application/cloudevents+json",
                               "Nats-Msg-Id": "job-1:completed"}
    event = json.loads(message.body)
    assert (event["id"], event["type"], event["subject"]) == (
        "job-1:completed", "dev.my-platform.agent.completed", "job-1")
    failed = JobResult.failed("job-2", "t", 1, ErrorInfo("InvalidJob", "bad"))
    assert result_message(failed, NAMES, "x.status").subject == "x.status.failed"


def _verdict(read: Any, headers: dict[str, str], body: bytes) -> str:
    try:
        return f"job {read(headers, body, NAMES).job_id}"
    except InvalidJob as exc:
        assert exc.details, exc.message
        return "refused"


_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12) | st.lists(
    st.sampled_from(["%", "%2", "%C0%A0", "%E2%82", "%FF", "%25", "%20", "%00", "%0A", "%C3%A9",
                     '"', "\\", "/src", "1.0", "e-1", "dev.my-platform.agent.execute"]),
    max_size=4).map("".join)


@settings(max_examples=400)
@given(st.dictionaries(st.sampled_from(["ce-source", "ce-id", "ce-subject", "ce-x"]), _values,
                       max_size=3),
       st.sampled_from([json.dumps(JOB).encode(), b'{"job_id": "a\\u0000"}', b"[" * 3000,
                        json.dumps(JOB, ensure_ascii=False).encode("utf-16"),
                        json.dumps({**JOB, "job_id": " j"}).encode()]))
def test_the_same_bytes_get_the_same_verdict_over_http_and_nats(
        overrides: dict[str, str], body: bytes) -> None:
    headers = {**{f"ce-{k}": v for k, v in ATTRIBUTES.items() if k != "datacontenttype"},
               "content-type": "application/json", **overrides}
    assert _verdict(read_job, headers, body) == _verdict(read_nats_job, headers, body)


@pytest.mark.parametrize("body", [b"[" * 10_000, b'{"data": ' + b"[" * 10_000,
                                  b'{"job_id": "x", "d": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_deep_nesting_is_invalid_job_and_identity_never_raises(body: bytes) -> None:
    with pytest.raises(InvalidJob) as refused:
        read_nats_job(binary_headers(ATTRIBUTES), body, NAMES)
    assert "nested deeper than 64" in " ".join(refused.value.details) or "JSON" in str(
        refused.value)
    job_identity({}, body)  # raised RecursionError: the consumer's task died unsettled


def test_a_raw_non_ascii_header_value_is_refused() -> None:
    headers = {**binary_headers(ATTRIBUTES), "ce-source": "/caf\u00e9"}
    with pytest.raises(InvalidJob) as refused:
        read_nats_job(headers, json.dumps(JOB).encode(), NAMES)
    assert "ce-source" in " ".join(refused.value.details)


@pytest.mark.parametrize("text", ["\U0001f600 emoji", "a\\u0000b as text", "\\ud83d"])
def test_what_only_looks_like_a_nul_or_a_surrogate_is_read(text: str) -> None:
    data = {**JOB, "input_payload": {"messages": [{"role": "user", "content": text}]}}
    for body in (json.dumps(data).encode(), json.dumps(data, ensure_ascii=False).encode()):
        job = read_nats_job(binary_headers(ATTRIBUTES), body, NAMES)
        assert job.messages[0]["content"] == text
