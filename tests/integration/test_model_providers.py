"""The real provider SDKs, through the service's runtime, against a provider inside the test.

Model calls are bounded (MODEL_TIMEOUT_SECONDS), retried when transient
(MODEL_MAX_RETRIES, each retry logged with the job's id) and classified
(CONTRACT section 6); a job never chooses where the service's keys go
(MODEL_ALLOWED_BASE_URLS, section 3).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.config import load_settings
from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.domain.errors import InvalidAgentDefinition, ModelError
from agent_executor.domain.job import Job
from tests.integration.provider_server import TOOL_ARGS, ProviderServer
from tests.unit.langgraph.conftest import EventLog, definition, job_with, node

SERVICE_KEY = "service-key-for-the-test"  # not shaped like a real key (tests/deploy scans)
GUARD_LOGGER = "agent_executor.adapters.langgraph.guarded"


@pytest.fixture
async def server() -> AsyncIterator[ProviderServer]:
    s = await ProviderServer().start()
    yield s
    await s.close()


@pytest.fixture
async def other_server() -> AsyncIterator[ProviderServer]:
    s = await ProviderServer().start()
    yield s
    await s.close()


def runtime(**env: str) -> LangGraphAgentRuntime:
    return LangGraphAgentRuntime(InMemorySaver(), load_settings(env), registry=ToolRegistry())


def openai_env(server: ProviderServer, **env: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": SERVICE_KEY, "OPENAI_BASE_URL": f"{server.url}/v1", **env}


def model_job(model: dict[str, Any]) -> Job:
    return job_with(definition(node("orchestrator", model=model)),
                    f"provider-{uuid.uuid4().hex[:8]}")


OPENAI = {"provider": "openai", "model": "gpt-test"}


async def test_an_openai_compatible_server_streams_text_and_tool_calls(
        server: ProviderServer) -> None:
    log = EventLog()
    output = await runtime(**openai_env(server)).run(model_job(OPENAI), log)

    assert output.output == "Wrote it."
    assert output.files == {TOOL_ARGS["file_path"]: TOOL_ARGS["content"]}
    assert "".join(e["content"] for e in log.of("on_llm_stream")).startswith("Writing the file.")
    (start,) = log.of("on_tool_start")
    assert start["tool"] == "write_file" and start["call_id"] == "call_1"
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
    assert all(r.body["stream"] is True for r in server.requests)
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {SERVICE_KEY}"}


async def test_a_429_is_retried_logged_with_the_job_id_and_the_job_completes(
        server: ProviderServer, caplog: pytest.LogCaptureFixture) -> None:
    server.faults = ["429"]
    job = model_job(OPENAI)
    with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
        output = await runtime(**openai_env(server)).run(job, EventLog())

    assert output.output == "Wrote it."
    assert len(server.requests) == 3  # the 429, its retry, the turn after the tool
    (retry,) = [r for r in caplog.records if r.name == GUARD_LOGGER]
    assert retry.levelno == logging.WARNING
    assert retry.job_id == job.job_id  # type: ignore[attr-defined]
    assert retry.trace_id == job.trace_id  # type: ignore[attr-defined]
    assert "HTTP 429" in retry.getMessage() and "retry 1 of 2" in retry.getMessage()


async def test_a_provider_that_keeps_failing_with_500_is_a_retryable_model_error(
        server: ProviderServer, caplog: pytest.LogCaptureFixture) -> None:
    server.always = "500"
    with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER), \
            pytest.raises(ModelError) as caught:
        await runtime(**openai_env(server, MODEL_MAX_RETRIES="2")).run(
            model_job(OPENAI), EventLog())

    assert caught.value.retryable is True
    assert "HTTP 500" in caught.value.message
    assert len(server.requests) == 3  # MODEL_MAX_RETRIES + 1
    assert len([r for r in caplog.records if r.name == GUARD_LOGGER]) == 2


async def test_a_hung_provider_times_out_as_a_retryable_model_error(
        server: ProviderServer) -> None:
    server.always = "hang"
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        rt = runtime(**openai_env(server, MODEL_TIMEOUT_SECONDS="1", MODEL_MAX_RETRIES="1"))
        await asyncio.wait_for(rt.run(model_job(OPENAI), EventLog()), timeout=30)
    elapsed = time.monotonic() - started

    assert caught.value.retryable is True
    assert "Timeout" in caught.value.message
    assert len(server.requests) == 2
    assert 2 <= elapsed < 10, elapsed  # two 1 s requests and one short backoff, not an hour


async def test_a_bad_key_is_not_retried(server: ProviderServer) -> None:
    server.always = "401"
    with pytest.raises(ModelError) as caught:
        await runtime(**openai_env(server)).run(model_job(OPENAI), EventLog())

    assert caught.value.retryable is False
    assert "HTTP 401" in caught.value.message
    assert len(server.requests) == 1


@pytest.mark.parametrize(("mode", "retryable", "requests"),
                         [("ok", None, 2), ("500", True, 2), ("401", False, 1)])
async def test_anthropic_messages_stream_and_its_errors(
        server: ProviderServer, mode: str, retryable: bool | None, requests: int) -> None:
    server.always = mode
    model = {"provider": "anthropic", "model": "claude-test", "base_url": server.url}
    rt = runtime(MODEL_ALLOWED_BASE_URLS=server.url, MODEL_MAX_RETRIES="1",
                 ANTHROPIC_API_KEY=SERVICE_KEY)
    if retryable is None:
        output = await rt.run(model_job(model), EventLog())
        assert output.files == {TOOL_ARGS["file_path"]: TOOL_ARGS["content"]}
        assert output.output.startswith("Writing")
    else:
        with pytest.raises(ModelError) as caught:
            await rt.run(model_job(model), EventLog())
        assert caught.value.retryable is retryable
    assert len(server.requests) == requests
    assert all(r.path == "/v1/messages" for r in server.requests)
    assert not any(SERVICE_KEY in v for r in server.requests for v in r.headers.values())


async def test_the_service_key_never_reaches_a_host_the_job_chose(
        server: ProviderServer, other_server: ProviderServer) -> None:
    """`server` is OPENAI_BASE_URL; `other_server` is allowed, and chosen by the job."""
    rt = runtime(**openai_env(server, MODEL_ALLOWED_BASE_URLS=f"{other_server.url}/v1"))

    await rt.run(model_job({**OPENAI, "base_url": f"{other_server.url}/v1"}), EventLog())
    await rt.run(model_job(OPENAI), EventLog())

    assert len(other_server.requests) == 2
    received = [v for r in other_server.requests for v in r.headers.values()]
    assert not any(SERVICE_KEY in v for v in received)
    assert {r.headers["authorization"] for r in other_server.requests} == {"Bearer not-needed"}
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {SERVICE_KEY}"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_a_base_url_outside_the_allowlist_is_an_invalid_definition(
        server: ProviderServer, provider: str) -> None:
    rt = runtime(OPENAI_API_KEY=SERVICE_KEY, ANTHROPIC_API_KEY=SERVICE_KEY,
                 MODEL_ALLOWED_BASE_URLS="https://llm.internal.example/v1")
    model = {"provider": provider, "model": "m", "base_url": server.url}
    log = EventLog()

    with pytest.raises(InvalidAgentDefinition) as caught:
        await rt.run(model_job(model), log)

    assert "nodes[0].config.model.base_url" in caught.value.message
    assert "MODEL_ALLOWED_BASE_URLS" in caught.value.message
    assert server.requests == [] and log.events == []


async def test_no_allowlist_means_no_job_chooses_an_endpoint(server: ProviderServer) -> None:
    with pytest.raises(InvalidAgentDefinition) as caught:
        await runtime(**openai_env(server)).run(
            model_job({**OPENAI, "base_url": "http://169.254.169.254/v1"}), EventLog())
    assert "MODEL_ALLOWED_BASE_URLS (unset" in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize(("mode", "retryable", "requests"),
                         [("ok", None, 2), ("500", True, 2), ("hang", True, 2),
                          ("401", False, 1)])
async def test_ollama_is_bounded_and_classified_too(
        server: ProviderServer, mode: str, retryable: bool | None, requests: int) -> None:
    server.always = mode
    model = {"provider": "ollama", "model": "llama-test", "base_url": server.url}
    rt = runtime(MODEL_ALLOWED_BASE_URLS=server.url, MODEL_MAX_RETRIES="1",
                 MODEL_TIMEOUT_SECONDS="1")
    if retryable is None:
        output = await rt.run(model_job(model), EventLog())
        assert output.files == {TOOL_ARGS["file_path"]: TOOL_ARGS["content"]}
        assert output.output == "Wrote it."
    else:
        with pytest.raises(ModelError) as caught:
            await asyncio.wait_for(rt.run(model_job(model), EventLog()), timeout=30)
        assert caught.value.retryable is retryable
    assert len(server.requests) == requests
    assert all(r.path == "/api/chat" for r in server.requests)
