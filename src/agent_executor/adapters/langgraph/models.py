"""Chat models by provider, built when a definition is compiled (so start-up needs no keys)."""

from __future__ import annotations

from typing import Protocol

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.adapters.langgraph.spec import ModelSpec
from agent_executor.domain.errors import ModelError


class ProviderSettings(Protocol):
    """The part of `Settings` the providers read (OPENAI_*, ANTHROPIC_API_KEY)."""

    @property
    def openai_api_key(self) -> str | None: ...

    @property
    def openai_base_url(self) -> str | None: ...

    @property
    def anthropic_api_key(self) -> str | None: ...


class ChatModelFactory:
    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings

    def create(self, spec: ModelSpec, agent: str) -> BaseChatModel:
        """A model for `agent`; `ModelError` (not retryable) naming a missing key."""
        if spec.provider == "scripted":
            return ScriptedChatModel(agent=agent, replies=spec.replies, delay_ms=spec.delay_ms,
                                     model_name=spec.model)
        if spec.provider == "openai":
            return self._openai(spec)
        if spec.provider == "anthropic":
            return self._anthropic(spec)
        if spec.provider == "ollama":
            from langchain_ollama import ChatOllama

            return ChatOllama(model=spec.model, base_url=spec.base_url,
                              temperature=spec.temperature)
        raise ModelError(f"{spec.path}.provider: unknown provider {spec.provider!r}")

    def _openai(self, spec: ModelSpec) -> BaseChatModel:
        key = _require(self._settings.openai_api_key, "OPENAI_API_KEY", spec)
        from langchain_openai import ChatOpenAI

        # Chat Completions, not the Responses API: every OpenAI-compatible server
        # behind OPENAI_BASE_URL speaks the former.
        return ChatOpenAI(model=spec.model, api_key=SecretStr(key),
                          base_url=spec.base_url or self._settings.openai_base_url,
                          temperature=spec.temperature, use_responses_api=False)

    def _anthropic(self, spec: ModelSpec) -> BaseChatModel:
        key = _require(self._settings.anthropic_api_key, "ANTHROPIC_API_KEY", spec)
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model_name=spec.model, api_key=SecretStr(key),
                             base_url=spec.base_url, temperature=spec.temperature,
                             timeout=None, stop=None)


def _require(value: str | None, variable: str, spec: ModelSpec) -> str:
    if not value:
        raise ModelError(f"{spec.path}.provider: the {spec.provider} provider needs {variable}, "
                         "which is not set in the service's environment")
    return value
