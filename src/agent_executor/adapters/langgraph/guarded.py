"""A provider's chat model with bounded retries, classified failures and a step bound.

The SDKs' own retries are off (`max_retries=0`): retrying here is one policy for
every provider, decided by `provider_errors.classify`, and each retry is logged
as a WARNING with the job's `job_id` and `trace_id` (from the run's metadata).
A stream is retried only before its first chunk: a token already streamed to
followers is never streamed twice. The time limit of one request is the SDK's
(`MODEL_TIMEOUT_SECONDS`, set by `ChatModelFactory`).

The step bound: every agent (the orchestrator and each specialist, whose
sub-graphs keep the library's own limit) refuses a model call at superstep
`step_limit` or later with `StepLimitExceeded`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool
from langgraph.config import get_config

from agent_executor.adapters.langgraph.provider_errors import classify, describe
from agent_executor.domain.errors import AgentExecutorError, StepLimitExceeded

logger = logging.getLogger(__name__)

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None


def step_limit_message(limit: int) -> str:
    return (f"the agent did not finish within the step limit of {limit} steps per run "
            "(it kept calling tools); see docs/operations.md")


class GuardedChatModel(BaseChatModel):
    """`model_name` and `profile` mirror the inner model's, so deepagents picks the
    same harness profile and summarisation limits for it."""

    inner: BaseChatModel
    provider: str
    model_name: str
    max_retries: int = 2
    step_limit: int | None = None
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return self.inner._identifying_params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        """The inner model's, naming the provider and model as the definition does (the
        tracing callbacks read them)."""
        params = self.inner._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The provider formats the tools; the calls still go through this model."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.inner.bind_tools(tools, **kwargs)
        if isinstance(bound, RunnableBinding) and bound.bound is self.inner:
            return self.bind(**bound.kwargs)
        if bound is self.inner:  # a model that needs no tool schema (scripted)
            return self
        raise TypeError(f"{type(self.inner).__name__}.bind_tools returned {type(bound).__name__}")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        self._check_step(run_manager)
        for attempt in range(self.max_retries + 1):
            try:
                return self.inner._generate(messages, stop=stop, run_manager=run_manager,
                                            **kwargs)
            except Exception as exc:
                time.sleep(self._retry_or_raise(exc, attempt, run_manager))
        raise AssertionError("unreachable")

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        self._check_step(run_manager)
        for attempt in range(self.max_retries + 1):
            try:
                return await self.inner._agenerate(messages, stop=stop,
                                                   run_manager=run_manager, **kwargs)
            except Exception as exc:
                await asyncio.sleep(self._retry_or_raise(exc, attempt, run_manager))
        raise AssertionError("unreachable")

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self._check_step(run_manager)
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                for chunk in self.inner._stream(messages, stop=stop, run_manager=run_manager,
                                                **kwargs):
                    started = True
                    yield chunk
                return
            except Exception as exc:
                time.sleep(self._retry_or_raise(exc, attempt if not started else
                                                self.max_retries, run_manager))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        self._check_step(run_manager)
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                async for chunk in self.inner._astream(messages, stop=stop,
                                                       run_manager=run_manager, **kwargs):
                    started = True
                    yield chunk
                return
            except Exception as exc:
                # Once a chunk is out, a retry would stream it twice: this was the last try.
                await asyncio.sleep(self._retry_or_raise(
                    exc, attempt if not started else self.max_retries, run_manager))

    def _check_step(self, run_manager: RunManager) -> None:
        step = _metadata(run_manager).get("langgraph_step")
        if self.step_limit is not None and isinstance(step, int) and step >= self.step_limit:
            raise StepLimitExceeded(step_limit_message(self.step_limit))

    def _retry_or_raise(self, exc: Exception, attempt: int, run_manager: RunManager) -> float:
        """The delay before the next try, or raise the classified failure."""
        if isinstance(exc, AgentExecutorError):
            raise exc
        error = classify(exc)
        if error is None:
            raise exc
        if not error.retryable or attempt >= self.max_retries:
            raise error from exc
        delay = self._delay(exc, attempt)
        metadata = _metadata(run_manager)
        logger.warning("model request failed (%s), retry %d of %d in %.2f s",
                       describe(exc), attempt + 1, self.max_retries, delay,
                       extra={"job_id": metadata.get("job_id"),
                              "trace_id": metadata.get("trace_id"),
                              "provider": self.provider})
        return delay

    def _delay(self, exc: Exception, attempt: int) -> float:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        retry_after = headers.get("retry-after") if headers is not None else None
        try:
            if retry_after is not None:
                return min(max(float(retry_after), 0.0), self.max_backoff_seconds)
        except ValueError:  # an HTTP date: fall back to our own backoff
            pass
        backoff = self.backoff_seconds * 2 ** attempt
        return float(min(backoff * (0.75 + random.random() / 2), self.max_backoff_seconds))


def _metadata(run_manager: RunManager) -> Mapping[str, Any]:
    """The run's metadata: the graph task's config (a streamed call gets no run manager)."""
    try:
        return get_config().get("metadata") or {}
    except RuntimeError:  # called outside a graph run
        return run_manager.metadata if run_manager is not None else {}
