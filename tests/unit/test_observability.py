"""The job span, usage on every result, limits in the job, and bounded metric labels."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_executor.adapters.cloudevents_codec import EventNames, read_job, result_event
from agent_executor.adapters.metrics import MAX_MODEL_LABELS, PrometheusMetrics
from agent_executor.adapters.otel.tracer import OtelJobTracer, tracer_provider
from agent_executor.domain.errors import InvalidJob, ModelError
from agent_executor.domain.job import Job, parse_job
from agent_executor.domain.result import JobResult
from agent_executor.domain.usage import Counts, Limits, Usage
from tests.unit.conftest import World, job_data, make_job
from tests.unit.fakes import FakeRuntime

HEX_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPENT = Usage(Counts(2, 10, 4), {"scripted:s": Counts(2, 10, 4)})


def traced_world(runtime: FakeRuntime | None = None) -> tuple[World, InMemorySpanExporter,
                                                                 OtelJobTracer]:
    exporter = InMemorySpanExporter()
    tracer = OtelJobTracer(tracer_provider("test", exporter))
    return World(runtime, tracer=tracer), exporter, tracer


def finished_spans(exporter: InMemorySpanExporter, tracer: OtelJobTracer) -> list[Any]:
    tracer.provider.force_flush()
    return list(exporter.get_finished_spans())


async def test_the_job_span_takes_the_jobs_trace_id_and_the_result_names_it() -> None:
    world, exporter, tracer = traced_world()
    job = parse_job(job_data(trace_id=HEX_TRACE))

    result = await world.execute.execute(job, "http")

    [span] = finished_spans(exporter, tracer)
    assert span.name == "agent_executor.job" and span.parent is None
    assert f"{span.context.trace_id:032x}" == HEX_TRACE
    assert dict(span.attributes) == {"job_id": "job-1", "trace_id": HEX_TRACE, "run": 1,
                                     "attempt": 1, "source": "http", "status": "completed"}
    assert result.traceparent == f"00-{HEX_TRACE}-{span.context.span_id:016x}-01"
    assert world.ledger.records["job-1"].result == result  # recorded, so redelivered alike
    assert result_event(result, EventNames())["traceparent"] == result.traceparent


async def test_a_job_span_continues_the_inbound_traceparent() -> None:
    world, exporter, tracer = traced_world()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    job = Job.from_data({**job_data(trace_id="not-hex"), "traceparent": parent})

    await world.execute.execute(job, "nats")

    [span] = finished_spans(exporter, tracer)
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


async def test_a_job_whose_trace_id_is_not_hex_gets_a_new_trace() -> None:
    world, exporter, tracer = traced_world(FakeRuntime(error=ModelError("no")))
    await world.execute.execute(make_job(), "http")
    [span] = finished_spans(exporter, tracer)
    assert span.parent is None and span.attributes["status"] == "failed"
    assert span.status.status_code.name == "ERROR"


@pytest.mark.parametrize(("headers", "expected"), [
    ({"ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ({"ce-traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"}, None),
    ({"ce-traceparent": "garbage"}, None),
    ({}, None),
])
def test_the_inbound_traceparent_is_read_when_valid_and_ignored_otherwise(
        headers: dict[str, str], expected: str | None) -> None:
    import json
    base = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "t",
            "ce-type": "dev.my-platform.agent.execute", "content-type": "application/json"}
    job = read_job({**base, **headers}, json.dumps(job_data()).encode(), EventNames())
    assert job.traceparent == expected


async def test_untraced_results_keep_the_derived_traceparent() -> None:
    world = World()
    result = await world.execute.execute(make_job(), "http")
    assert result.traceparent is None
    assert result_event(result, EventNames())["traceparent"].startswith("00-")


@pytest.mark.parametrize("runtime", [FakeRuntime(), FakeRuntime(error=ModelError("no"))])
async def test_every_finished_result_carries_the_runtimes_usage(runtime: FakeRuntime) -> None:
    runtime.spent = SPENT
    world = World(runtime)
    result = await world.execute.execute(make_job(), "http")
    assert result.usage == SPENT
    assert result.to_data()["usage"] == {
        "model_calls": 2, "input_tokens": 10, "output_tokens": 4, "total_tokens": 14,
        "by_model": {"scripted:s": {"model_calls": 2, "input_tokens": 10, "output_tokens": 4,
                                    "total_tokens": 14}}}
    assert JobResult.from_record(result.to_record()) == result
    assert world.ledger.records["job-1"].to_data()["usage"]["total_tokens"] == 14


async def test_a_cancelled_job_carries_its_usage_too() -> None:
    runtime = FakeRuntime()
    runtime.spent = SPENT
    runtime.gate = asyncio.Event()
    world = World(runtime)
    running = asyncio.create_task(world.execute.execute(make_job(), "http"))
    await runtime.started.wait()
    await world.execute.cancel("job-1", "enough")
    result = await running
    assert result.status == "cancelled" and result.usage == SPENT


async def test_a_failed_job_counts_its_error_type() -> None:
    world = World(FakeRuntime(error=ModelError("no")))
    await world.execute.execute(make_job(), "http")
    assert world.metrics.failures == ["ModelError"]


@pytest.mark.parametrize(("limits", "problem"), [
    ({"max_model_calls": 0}, "data.limits.max_model_calls: must be from 1"),
    ({"max_model_calls": "3"}, "data.limits.max_model_calls: expected a whole number"),
    ({"max_total_tokens": True}, "data.limits.max_total_tokens: expected a whole number"),
    ({"max_total_tokens": 1.5}, "data.limits.max_total_tokens: expected a whole number"),
    ([], "data.limits: expected an object"),
])
def test_bad_limits_are_unreadable_input_naming_the_field(limits: object, problem: str) -> None:
    with pytest.raises(InvalidJob) as raised:
        parse_job(job_data(limits=limits))
    assert any(d.startswith(problem) for d in raised.value.details), raised.value.details


def test_limits_are_read_kept_with_the_job_and_override_the_defaults() -> None:
    job = parse_job(job_data(limits={"max_model_calls": 5}))
    assert job.limits == Limits(5, None)
    assert Job.from_data(job.to_data()) == job
    assert job.limits.over(Limits(100, 1000)) == Limits(5, 1000)


def test_model_labels_are_bounded_and_failures_of_unknown_models_fold_into_other() -> None:
    metrics = PrometheusMetrics()
    for i in range(MAX_MODEL_LABELS + 5):
        metrics.model_call("scripted", f"m{i}", "success", 0.1, 3, 2)
    metrics.model_call("openai", "made-up", "error", 0.1, 0, 0)
    models = {s.labels["model"] for m in metrics.registry.collect()
              if m.name == "agent_executor_llm_requests" for s in m.samples}
    assert len(models) == MAX_MODEL_LABELS + 1 and "other" in models
    assert "made-up" not in models
    value = metrics.registry.get_sample_value(
        "agent_executor_llm_tokens_total", {"provider": "scripted", "model": "other",
                                            "kind": "input"})
    assert value == 5 * 3


async def test_a_job_over_budget_fails_budget_exceeded_without_the_extra_call() -> None:
    import json
    from pathlib import Path

    from langgraph.checkpoint.memory import InMemorySaver

    from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
    from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
    from tests.unit.langgraph.conftest import Keys

    data = json.loads((Path(__file__).parents[2] / "examples/jobs/hello.json").read_text())
    data.update(job_id="budget-hello", limits={"max_model_calls": 2})
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load())
    world = World(runtime)  # type: ignore[arg-type]

    result = await world.execute.execute(parse_job(data), "http")

    assert result.status == "failed" and result.error is not None
    assert (result.error.type, result.error.retryable) == ("BudgetExceeded", False)
    assert "limits.max_model_calls (2) after 2 model call(s)" in result.error.message
    assert ScriptedChatModel.calls.count("budget-hello") == 2  # the third was never made
    assert result.usage is not None and result.usage.total.model_calls == 2
    assert world.metrics.failures == ["BudgetExceeded"]


@pytest.mark.parametrize("value", ["-1", "0", "many", "1.5"])
def test_a_bad_default_budget_stops_start_up_naming_the_variable(value: str) -> None:
    from agent_executor.adapters.config import ConfigError, load_settings
    with pytest.raises(ConfigError) as raised:
        load_settings({"JOB_MAX_TOTAL_TOKENS": value})
    assert "JOB_MAX_TOTAL_TOKENS" in str(raised.value.problems)


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
])
def test_tracing_is_on_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    from agent_executor.adapters.config import load_settings
    settings = load_settings({**env, "JOB_MAX_MODEL_CALLS": "40"})
    assert settings.tracing is on and settings.job_max_model_calls == 40
