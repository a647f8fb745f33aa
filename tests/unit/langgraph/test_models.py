"""Providers: keys are needed only by jobs that use them, and say which variable is missing."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.guarded import GuardedChatModel
from agent_executor.adapters.langgraph.models import NO_KEY, ChatModelFactory, base_url_allowed
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.adapters.langgraph.spec import ModelSpec
from agent_executor.domain.errors import ModelError
from agent_executor.domain.job import parse_job
from tests.unit.langgraph.conftest import EventLog, Keys, definition, example, job_with, node


@pytest.mark.parametrize(("name", "variable"), [("openai", "OPENAI_API_KEY"),
                                                ("anthropic", "ANTHROPIC_API_KEY")])
async def test_a_provider_without_its_key_fails_fast_naming_the_variable(
        runtime: LangGraphAgentRuntime, log: EventLog, name: str, variable: str) -> None:
    job = parse_job(example(name, f"{name}-{uuid.uuid4().hex[:8]}"))

    with pytest.raises(ModelError) as caught:
        await runtime.run(job, log)

    assert variable in caught.value.message
    assert "nodes[0].config.model.provider" in caught.value.message
    assert caught.value.retryable is False
    assert log.events == []


def test_start_up_needs_no_keys() -> None:
    LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry())


def test_openai_honours_the_base_url_and_takes_the_key() -> None:
    factory = ChatModelFactory(Keys(openai_api_key="sk-test",
                                    openai_base_url="http://llm.internal:8000/v1",
                                    model_timeout_seconds=7.5, model_max_retries=3))
    model = factory.create(ModelSpec("openai", "gpt-4.1-mini", "nodes[0].config.model"), "a")
    assert isinstance(model, GuardedChatModel) and model.max_retries == 3
    inner: Any = model.inner
    assert inner.openai_api_base == "http://llm.internal:8000/v1"
    assert inner.model_name == "gpt-4.1-mini"
    assert inner.openai_api_key.get_secret_value() == "sk-test"
    assert inner.request_timeout == 7.5
    assert inner.max_retries == 0  # the SDK does not retry behind the guard's back


def test_a_job_naming_the_configured_endpoint_needs_no_allowlist() -> None:
    factory = ChatModelFactory(Keys(openai_api_key="sk-test",
                                    openai_base_url="http://llm.internal:8000/v1"))
    model = factory.create(ModelSpec("openai", "m", "m", base_url="http://llm.internal:8000/v1/"),
                           "a")
    inner: Any = model.inner  # type: ignore[attr-defined]
    assert inner.openai_api_key.get_secret_value() == "sk-test"


def test_an_allowed_job_endpoint_gets_no_service_key() -> None:
    factory = ChatModelFactory(Keys(openai_api_key="sk-test", anthropic_api_key="sk-ant",
                                    model_allowed_base_urls=("http://vllm.internal",)))
    for provider in ("openai", "anthropic"):
        model = factory.create(ModelSpec(provider, "m", "m",
                                         base_url="http://vllm.internal/v1"), "a")
        inner: Any = model.inner  # type: ignore[attr-defined]
        key = inner.openai_api_key if provider == "openai" else inner.anthropic_api_key
        assert key.get_secret_value() == NO_KEY


def test_anthropic_and_ollama_models_are_built() -> None:
    factory = ChatModelFactory(Keys(anthropic_api_key="sk-ant-test", model_timeout_seconds=9,
                                    model_allowed_base_urls=("http://gpu:11434",)))
    claude: Any = factory.create(ModelSpec("anthropic", "claude-sonnet-4-5", "m"), "a")
    assert claude.inner.model == "claude-sonnet-4-5"
    assert claude.inner.default_request_timeout == 9 and claude.inner.max_retries == 0
    llama: Any = factory.create(ModelSpec("ollama", "llama3.1", "m",
                                          base_url="http://gpu:11434"), "a")
    assert llama.inner.base_url == "http://gpu:11434"
    assert llama.inner.client_kwargs == {"timeout": 9}


def test_ollama_without_a_base_url_uses_its_default_and_needs_no_allowlist() -> None:
    llama: Any = ChatModelFactory(Keys()).create(ModelSpec("ollama", "llama3.1", "m"), "a")
    assert llama.inner.base_url is None


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://llm", True), ("http://llm/v1", True), ("http://llm.evil.com", False),
    ("http://llm:9999/v1", False), ("http://llm@evil.com/v1", False),
    ("https://llm/v1", False), ("http://other/v1", False)])
def test_a_prefix_admits_its_own_paths_only(url: str, allowed: bool) -> None:
    assert base_url_allowed(url, ("http://llm",)) is allowed
    assert base_url_allowed(url, ()) is False


def test_scripted_needs_nothing() -> None:
    model = ChatModelFactory(Keys()).create(ModelSpec("scripted", "any", "m"), "writer")
    assert isinstance(model, GuardedChatModel) and model.max_retries == 0
    assert isinstance(model.inner, ScriptedChatModel)


async def test_an_unreachable_provider_is_a_retryable_model_error(
        log: EventLog) -> None:
    with socket.socket() as probe:  # a local port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(model_allowed_base_urls=(url,),
                                                          model_max_retries=0),
                                    registry=ToolRegistry())
    d = definition(node("orchestrator", model={"provider": "ollama", "model": "llama3.1",
                                               "base_url": url}))

    with pytest.raises(ModelError) as caught:
        await runtime.run(job_with(d, f"ollama-{uuid.uuid4().hex[:8]}"), log)

    assert "model provider failed" in caught.value.message
    assert caught.value.retryable is True
