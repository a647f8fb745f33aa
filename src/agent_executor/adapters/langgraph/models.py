"""Chat models by provider, built when a definition is compiled (so start-up needs no keys).

Each model is bounded: one request waits at most `MODEL_TIMEOUT_SECONDS` for the
provider, transient failures are retried `MODEL_MAX_RETRIES` times (`guarded.py`),
and an agent stops at `step_limit` supersteps.

Where a model is called (CONTRACT section 3): a job's own `base_url` is honoured
only under a `MODEL_ALLOWED_BASE_URLS` prefix (else `InvalidAgentDefinition`);
the service's keys go only to the endpoints the service configured: OPENAI_API_KEY
to OPENAI_BASE_URL (or OpenAI's own endpoint), ANTHROPIC_API_KEY to Anthropic's.
A job-chosen endpoint, even an allowed one, gets no key (`NO_KEY` instead).
"""

from __future__ import annotations

from typing import Protocol

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agent_executor.adapters.langgraph.guarded import GuardedChatModel
from agent_executor.adapters.langgraph.scripted import ScriptedChatModel
from agent_executor.adapters.langgraph.spec import ModelSpec
from agent_executor.domain.errors import InvalidAgentDefinition, ModelError

NO_KEY = "not-needed"  # what a job-chosen endpoint receives instead of a service key
ALLOWLIST_VARIABLE = "MODEL_ALLOWED_BASE_URLS"


class ProviderSettings(Protocol):
    """The part of `Settings` the providers read (OPENAI_*, ANTHROPIC_API_KEY, MODEL_*)."""

    @property
    def openai_api_key(self) -> str | None: ...

    @property
    def openai_base_url(self) -> str | None: ...

    @property
    def anthropic_api_key(self) -> str | None: ...

    @property
    def model_timeout_seconds(self) -> float: ...

    @property
    def model_max_retries(self) -> int: ...

    @property
    def model_allowed_base_urls(self) -> tuple[str, ...]: ...


def base_url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """`url` starts with a prefix that ends at a path boundary: `http://llm` admits
    `http://llm/v1`, never `http://llm.evil.com`, `http://llm:9999` or `http://llm@evil`."""
    for prefix in prefixes:
        if url == prefix or (url.startswith(prefix)
                             and (prefix.endswith("/") or url[len(prefix)] == "/")):
            return True
    return False


class ChatModelFactory:
    def __init__(self, settings: ProviderSettings, *, step_limit: int | None = None,
                 backoff_seconds: float = 0.5) -> None:
        self._settings = settings
        self._step_limit = step_limit
        self._backoff_seconds = backoff_seconds

    def create(self, spec: ModelSpec, agent: str) -> BaseChatModel:
        """A model for `agent`; `InvalidAgentDefinition` for a base_url outside the
        allowlist, `ModelError` (not retryable) naming a missing key."""
        if spec.provider == "scripted":
            scripted = ScriptedChatModel(agent=agent, replies=spec.replies,
                                         delay_ms=spec.delay_ms, model_name=spec.model)
            return self._guarded(scripted, spec, max_retries=0)
        if spec.base_url is not None and not (
                spec.provider == "openai"
                and _same_endpoint(spec.base_url, self._settings.openai_base_url)):
            self._check_base_url(spec, spec.base_url)
        if spec.provider == "openai":
            return self._guarded(self._openai(spec), spec)
        if spec.provider == "anthropic":
            return self._guarded(self._anthropic(spec), spec)
        if spec.provider == "ollama":
            from langchain_ollama import ChatOllama

            ollama = ChatOllama(model=spec.model, base_url=spec.base_url,
                                temperature=spec.temperature,
                                client_kwargs={"timeout": self._settings.model_timeout_seconds})
            return self._guarded(ollama, spec)
        raise ModelError(f"{spec.path}.provider: unknown provider {spec.provider!r}")

    def _guarded(self, model: BaseChatModel, spec: ModelSpec,
                 max_retries: int | None = None) -> GuardedChatModel:
        retries = self._settings.model_max_retries if max_retries is None else max_retries
        return GuardedChatModel(inner=model, provider=spec.provider, model_name=spec.model,
                                profile=model.profile, max_retries=retries,
                                step_limit=self._step_limit,
                                backoff_seconds=self._backoff_seconds)

    def _check_base_url(self, spec: ModelSpec, url: str) -> None:
        allowed = self._settings.model_allowed_base_urls
        if not base_url_allowed(url, allowed):
            listed = ", ".join(allowed) if allowed else "unset, so no job may choose one"
            raise InvalidAgentDefinition(
                f"invalid agent_definition: {spec.path}.base_url: {url!r} is not under "
                f"{ALLOWLIST_VARIABLE} ({listed}); a job may only name a model endpoint the "
                "operator allowed")

    def _openai(self, spec: ModelSpec) -> BaseChatModel:
        from langchain_openai import ChatOpenAI

        configured = self._settings.openai_base_url
        if spec.base_url is None or _same_endpoint(spec.base_url, configured):
            key = _require(self._settings.openai_api_key, "OPENAI_API_KEY", spec)
            base_url = configured
        else:
            key, base_url = NO_KEY, spec.base_url
        # Chat Completions, not the Responses API: every OpenAI-compatible server
        # behind OPENAI_BASE_URL speaks the former.
        return ChatOpenAI(model=spec.model, api_key=SecretStr(key), base_url=base_url,
                          temperature=spec.temperature, use_responses_api=False,
                          timeout=self._settings.model_timeout_seconds, max_retries=0)

    def _anthropic(self, spec: ModelSpec) -> BaseChatModel:
        from langchain_anthropic import ChatAnthropic

        key = (NO_KEY if spec.base_url is not None
               else _require(self._settings.anthropic_api_key, "ANTHROPIC_API_KEY", spec))
        return ChatAnthropic(model_name=spec.model, api_key=SecretStr(key),
                             base_url=spec.base_url, temperature=spec.temperature,
                             timeout=self._settings.model_timeout_seconds, max_retries=0,
                             stop=None)


def _same_endpoint(url: str, configured: str | None) -> bool:
    return configured is not None and url.rstrip("/") == configured.rstrip("/")


def _require(value: str | None, variable: str, spec: ModelSpec) -> str:
    if not value:
        raise ModelError(f"{spec.path}.provider: the {spec.provider} provider needs {variable}, "
                         "which is not set in the service's environment")
    return value
