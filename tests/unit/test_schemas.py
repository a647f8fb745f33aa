"""The JSON Schemas (agent_executor/schemas, published as docs/schemas/) against the
examples, the service's own readers and the events the code emits."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from langgraph.checkpoint.memory import InMemorySaver
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from agent_executor.adapters.cloudevents_codec import EventNames, result_event
from agent_executor.adapters.http.openapi import SCHEMA_FILES, openapi_spec, package_schemas
from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.domain.errors import InvalidAgentDefinition, InvalidJob
from agent_executor.domain.events import StreamEvent, utc_timestamp
from agent_executor.domain.job import parse_job
from agent_executor.domain.outbox import end_data
from agent_executor.domain.result import AgentOutput, ErrorInfo, JobRecord, JobResult
from tests.unit.langgraph.conftest import EventLog, Keys

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.json"))
SCHEMAS = package_schemas()
REGISTRY: Registry[Any] = Registry().with_resources(
    (name, Resource(schema, DRAFT202012)) for name, schema in SCHEMAS.items())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": name}, registry=REGISTRY)


def openapi_validator(component: str) -> Draft202012Validator:
    registry = REGISTRY.with_resource("openapi.json",
                                      Resource(openapi_spec(), DRAFT202012))
    return Draft202012Validator({"$ref": f"openapi.json#/components/schemas/{component}"},
                                registry=registry)


def errors(name: str, instance: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(instance)]


def test_docs_schemas_are_the_package_schemas() -> None:
    published = sorted(p.name for p in (ROOT / "docs" / "schemas").glob("*.json"))
    assert published == sorted(SCHEMA_FILES)
    for name in SCHEMA_FILES:
        assert json.loads((ROOT / "docs" / "schemas" / name).read_text()) == SCHEMAS[name], (
            f"docs/schemas/{name} differs from src/agent_executor/schemas/{name}: copy it")


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_each_schema_is_valid_2020_12(name: str) -> None:
    assert SCHEMAS[name]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMAS[name])


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_job_is_valid_for_the_schema_the_parser_and_openapi(path: Path) -> None:
    data = json.loads(path.read_text())
    assert errors("job.json", data) == []
    assert errors("agent_definition.json", data["agent_definition"]) == []
    openapi_validator("JobExecutionEvent").validate(data)
    parse_job(data)
    parse_definition(data["agent_definition"], ToolRegistry.load().names())


def _job(**changes: Any) -> dict[str, Any]:
    data = json.loads((ROOT / "examples" / "jobs" / "hello.json").read_text())
    data.update(changes)
    return data


def _payload(messages: Any) -> dict[str, Any]:
    return _job(input_payload={"messages": messages})


BAD_JOBS = {
    "not an object": [],
    "no job_id": {k: v for k, v in _job().items() if k != "job_id"},
    "job_id a number": _job(job_id=7),
    "job_id blank": _job(job_id="   "),
    "job_id too long": _job(job_id="j" * 201),
    "trace_id null": _job(trace_id=None),
    "definition a list": _job(agent_definition=[]),
    "no input_payload": {k: v for k, v in _job().items() if k != "input_payload"},
    "no messages": _job(input_payload={"files": {}}),
    "empty messages": _payload([]),
    "unknown role": _payload([{"role": "wizard", "content": "hi"}]),
    "content a number": _payload([{"role": "user", "content": 3}]),
    "message a string": _payload(["hi"]),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_the_schema_and_the_parser_refuse_the_same_bad_jobs(case: str) -> None:
    data = BAD_JOBS[case]
    assert errors("job.json", data), f"the schema accepts {case}"
    with pytest.raises(InvalidJob):
        parse_job(data)


def _definition(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(json.loads(
        (ROOT / "examples" / "jobs" / "spec-builder.json").read_text())["agent_definition"])
    change(data)
    return data


BAD_DEFINITIONS = {
    "no nodes": lambda d: d.pop("nodes"),
    "no Orchestrator": lambda d: d["nodes"][0].update(type="Specialist"),
    "two Orchestrators": lambda d: d["nodes"][1].update(type="Orchestrator"),
    "unknown node type": lambda d: d["nodes"][1].update(type="Critic"),
    "unknown provider": lambda d: d["nodes"][0]["config"]["model"].update(provider="acme"),
    "no model name": lambda d: d["nodes"][0]["config"].update(model={"provider": "openai"}),
    "name with a space": lambda d: d["nodes"][1]["config"].update(name="spec writer"),
    "no system_prompt": lambda d: d["nodes"][1]["config"].pop("system_prompt"),
    "blank system_prompt": lambda d: d["nodes"][0]["config"].update(system_prompt="  "),
    "a script": lambda d: d.update(tool_definitions=[
        {"name": "x", "runtime": {"script": "import os"}}]),
    "scripted without responses": lambda d: d["nodes"][0]["config"].update(
        model={"provider": "scripted", "model": "s"}),
    "negative delay": lambda d: d["nodes"][0]["config"].update(
        model={"provider": "scripted", "responses": [{"content": "x"}], "delay_ms": -1}),
    "edge without a target": lambda d: d.update(edges=[{"source": d["nodes"][0]["id"]}]),
}


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_the_schema_and_the_reader_refuse_the_same_bad_definitions(case: str) -> None:
    data = _definition(BAD_DEFINITIONS[case])
    assert errors("agent_definition.json", data), f"the schema accepts {case}"
    with pytest.raises(InvalidAgentDefinition):
        parse_definition(data, ToolRegistry.load().names())


def _results() -> list[JobResult]:
    output = AgentOutput("done", {"/a.md": "# A"}, [{"role": "ai", "content": "done"}])
    return [JobResult.completed("j", "t", 1, output, duration_ms=12),
            JobResult.failed("j", "t", 2, ErrorInfo("ModelError", "no", retryable=True)),
            JobResult.failed("j", "t", 6, ErrorInfo("AttemptsExhausted", "crashed"))]


@pytest.mark.parametrize("truncated", [False, True])
def test_the_result_events_the_code_emits_match_result_json(truncated: bool) -> None:
    for result in _results():
        event = result_event(result, EventNames(), truncated=truncated)
        assert errors("result.json", event["data"]) == [], event
        openapi_validator("ResultEvent").validate(event)


def test_the_job_records_the_code_emits_match_job_record_json() -> None:
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    for result in [None, *_results()]:
        record = JobRecord("j", "t", "running" if result is None else result.status, 1,
                           "nats", now, now, now, result)
        assert errors("job_record.json", record.to_data()) == []


async def test_the_stream_events_of_a_real_run_match_stream_event_json() -> None:
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load())
    log = EventLog()
    for path in EXAMPLES:
        data = json.loads(path.read_text())
        if all(n["config"]["model"]["provider"] == "scripted"
               for n in data["agent_definition"]["nodes"]):
            output = await runtime.run(parse_job(data), log)
            end = end_data(JobResult.completed(data["job_id"], "t", 1, output, 5))
            log.events.append(("end", dict(end)))
    kinds = {kind for kind, _ in log.events}
    assert kinds >= {"on_llm_stream", "on_tool_start", "on_tool_end", "on_state_update", "end"}
    for seq, (kind, payload) in enumerate(log.events, start=1):
        event = StreamEvent(kind, "j", "t", seq, utc_timestamp(), payload).to_data()
        assert errors("stream_event.json", event) == [], event
    wrong = StreamEvent("on_tool_end", "j", "t", 1, utc_timestamp(), {"agent": "a"}).to_data()
    assert errors("stream_event.json", wrong)
