"""Traces as a collector receives them: the job span in the caller's trace, with its
model, tool and publish children (CONTRACT section 11)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.otel.callbacks import callbacks_for
from agent_executor.adapters.otel.tracer import OtelJobTracer, tracer_provider
from tests.integration.nats_harness import World, binary_event, eventually, structured_event
from tests.integration.service import ServiceProcess, wait_for
from tests.integration.test_service_http import job, post
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.unit.langgraph.conftest import Keys

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "agent-executor-test"}


def check_job_trace(receiver: OtlpReceiver, job_id: str) -> ReceivedSpan:
    """The job span continues the caller's span; returns it."""
    spans = receiver.in_trace(CALLER_TRACE)
    (job_span,) = [s for s in spans if s.name == "agent_executor.job"]
    assert job_span.parent_span_id == CALLER_SPAN
    assert job_span.service == "agent-executor-test"
    assert job_span.attributes["job_id"] == job_id
    assert job_span.attributes["status"] == "completed"
    assert job_span.attributes["run"] == 1 and job_span.attributes["attempt"] == 1
    children = receiver.children(job_span)
    models = [s for s in children if s.attributes.get("gen_ai.operation.name") == "chat"]
    tools = [s for s in children if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert len(models) == 3  # hello.json: three scripted answers
    for model in models:
        assert model.attributes["gen_ai.system"] == "scripted"
        assert model.attributes["gen_ai.request.model"] == "hello-script"
        assert model.attributes["gen_ai.usage.input_tokens"] > 0
        assert model.attributes["gen_ai.usage.output_tokens"] > 0
    assert sorted(t.attributes["tool"] for t in tools) == ["write_file", "write_todos"]
    assert all(t.attributes["status"] == "success" and t.attributes["call_id"] for t in tools)
    assert any(s.name == "agent_executor.result.publish" for s in children)
    return job_span


def hello_usage(result: dict[str, Any]) -> dict[str, Any]:
    usage: dict[str, Any] = result["usage"]
    assert usage["model_calls"] == 3
    # the scripted model counts words: "Let me plan this first." "Writing the greeting
    # now." "Done: /hello.md says hello to the world."
    assert usage["output_tokens"] == 5 + 4 + 7
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["by_model"] == {"scripted:hello-script": {
        k: v for k, v in usage.items() if k != "by_model"}}
    return usage


async def test_a_job_posted_with_ce_traceparent_is_traced_in_the_callers_trace(
        tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        service = await ServiceProcess(tracing_env(receiver), tmp_path).start()
        try:
            data = job()
            async with httpx.AsyncClient() as client:
                response = await post(client, service.url, data, **{
                    "ce-traceparent": TRACEPARENT, "Prefer": "wait=30"})
                assert response.status_code in (200, 202), response.text

                async def finished() -> dict[str, Any] | None:
                    got = (await client.get(f"{service.url}/jobs/{data['job_id']}")).json()
                    return got if got["status"] == "completed" else None
                record = await wait_for(finished, 30, "the job to complete")
            await wait_for(lambda: any(s.name == "agent_executor.result.publish"
                                       for s in receiver.in_trace(CALLER_TRACE)),
                           15, "the spans to reach the receiver")
            job_span = check_job_trace(receiver, data["job_id"])
            fields = f"otel_trace_id={CALLER_TRACE} span_id={job_span.span_id}"
            assert any(f"job_id={data['job_id']}" in line and fields in line
                       for line in service.logs().splitlines())
            hello_usage(record)
        finally:
            service.terminate()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_a_job_over_nats_is_traced_in_the_callers_trace(world: World, mode: str) -> None:
    with OtlpReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
        provider = tracer_provider("agent-executor-test", exporter)
        tracer = OtelJobTracer(provider)
        runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load(),
                                        callbacks=lambda: callbacks_for(tracer.tracer))
        await world.consumer(runtime_any=runtime, tracer=tracer)
        data = job()
        if mode == "structured":
            await world.publish(structured_event(data, traceparent=TRACEPARENT),
                                {"Content-Type": "application/cloudevents+json"})
        else:
            headers, body = binary_event(data)
            await world.publish(body, {**headers, "ce-traceparent": TRACEPARENT})

        async def published() -> bool:
            return len(await world.results()) >= 1
        await eventually(published, what="the result event")
        [message] = await world.results()
        event = json.loads(message.data or b"")
        await asyncio.to_thread(provider.force_flush)
        await asyncio.to_thread(provider.shutdown)

        job_span = check_job_trace(receiver, data["job_id"])
        assert event["traceparent"] == f"00-{CALLER_TRACE}-{job_span.span_id}-01"
        hello_usage(event["data"])
