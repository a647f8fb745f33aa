"""Providers: keys are needed only by jobs that use them, and say which variable is missing."""

from __future__ import annotations

import socket
import uuid

import pytest
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.models import ChatModelFactory
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
                                    openai_base_url="http://llm.internal:8000/v1"))
    model = factory.create(ModelSpec("openai", "gpt-4.1-mini", "nodes[0].config.model"), "a")
    assert model.openai_api_base == "http://llm.internal:8000/v1"  # type: ignore[attr-defined]
    assert model.model_name == "gpt-4.1-mini"  # type: ignore[attr-defined]
    assert model.openai_api_key.get_secret_value() == "sk-test"  # type: ignore[attr-defined]


def test_anthropic_and_ollama_models_are_built() -> None:
    factory = ChatModelFactory(Keys(anthropic_api_key="sk-ant-test"))
    claude = factory.create(ModelSpec("anthropic", "claude-sonnet-4-5", "m"), "a")
    assert claude.model == "claude-sonnet-4-5"  # type: ignore[attr-defined]
    llama = factory.create(ModelSpec("ollama", "llama3.1", "m", base_url="http://gpu:11434"), "a")
    assert llama.base_url == "http://gpu:11434"  # type: ignore[attr-defined]


def test_scripted_needs_nothing() -> None:
    model = ChatModelFactory(Keys()).create(ModelSpec("scripted", "any", "m"), "writer")
    assert isinstance(model, ScriptedChatModel) and isinstance(model, BaseChatModel)


async def test_an_unreachable_provider_is_a_retryable_model_error(
        runtime: LangGraphAgentRuntime, log: EventLog) -> None:
    with socket.socket() as probe:  # a local port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = definition(node("orchestrator", model={"provider": "ollama", "model": "llama3.1",
                                               "base_url": f"http://127.0.0.1:{port}"}))

    with pytest.raises(ModelError) as caught:
        await runtime.run(job_with(d, f"ollama-{uuid.uuid4().hex[:8]}"), log)

    assert "model provider failed" in caught.value.message
    assert caught.value.retryable is True
