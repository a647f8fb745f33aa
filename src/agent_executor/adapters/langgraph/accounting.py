"""Usage, budgets and model call metrics: one middleware on every agent (orchestrator
and specialists alike; tool calls are counted by `tools.ToolFailureMiddleware`).

Each model call's usage (the provider's own `usage_metadata`) goes into the
thread state under `usage`, keyed by the AI message's id, with a dict-merge
reducer: the state is checkpointed, so usage is summed over resumes, restarts
and runs, and deepagents' `task` tool, which hands a specialist the parent's
state and merges the specialist's state back, cannot count a call twice.

Before each model call the job's budget (the run's metadata
`max_model_calls` / `max_total_tokens`) is checked against that state and the
run's `RunTally` (the calls of parallel branches, which one branch's state does
not see yet, and the calls in flight): once it is reached, the call is not made
and the run fails `BudgetExceeded`. Calls are reserved before they are made, so
`max_model_calls` is exact even with specialists working in parallel; tokens are
known only afterwards, so calls already in flight may pass `max_total_tokens`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import (
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage
from langgraph.config import get_config
from langgraph.types import Command

from agent_executor.domain.usage import Limits, Usage
from agent_executor.ports.metrics import AgentMetrics

USAGE_KEY = "usage"


def merge_calls(left: Mapping[str, Any] | None,
                right: Mapping[str, Any] | None) -> dict[str, Any]:
    """The union of two `{ai_message_id: call}` maps: merging a copy again changes nothing."""
    return {**(left or {}), **(right or {})}


class UsageState(AgentState[Any]):
    usage: NotRequired[Annotated[dict[str, dict[str, Any]], merge_calls]]


def usage_of(state: Mapping[str, Any]) -> Usage:
    calls = state.get(USAGE_KEY) or {}
    return Usage.of_calls(calls.values() if isinstance(calls, Mapping) else ())


def limits_metadata(limits: Limits) -> dict[str, int]:
    """What `run` puts in the run's metadata for the middleware to read."""
    return limits.to_data()


class RunTally:
    """The model calls of the runs going on in this process, by thread: what parallel
    branches have spent and reserved (cleared by the runtime when a run ends)."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[str, dict[str, Any]]] = {}
        self._in_flight: dict[str, int] = {}

    def check_and_reserve(self, thread: str, state_calls: Mapping[str, Any],
                          limits: Limits) -> None:
        calls = merge_calls(state_calls, self._calls.get(thread))
        spent = Usage.of_calls(calls.values())
        in_flight = self._in_flight.get(thread, 0)
        if not limits.unlimited:
            if in_flight and limits.max_model_calls is not None:
                limits = Limits(limits.max_model_calls - in_flight, limits.max_total_tokens)
            limits.check(spent)
        self._in_flight[thread] = in_flight + 1

    def settle(self, thread: str, key: str | None, call: dict[str, Any] | None) -> None:
        self._in_flight[thread] = max(0, self._in_flight.get(thread, 1) - 1)
        if key is not None and call is not None:
            self._calls.setdefault(thread, {})[key] = call

    def take(self, thread: str) -> dict[str, dict[str, Any]]:
        """The run's calls (the run ended): those of a specialist whose `task` failed
        never reach the thread state."""
        self._in_flight.pop(thread, None)
        return self._calls.pop(thread, None) or {}


class NoAgentMetrics:
    def model_call(self, provider: str, model: str, outcome: str, duration_seconds: float,
                   input_tokens: int, output_tokens: int) -> None:
        return None

    def tool_call(self, tool: str, status: str) -> None:
        return None


class AccountingMiddleware(AgentMiddleware[UsageState, Any, Any]):
    state_schema = UsageState

    def __init__(self, provider: str, model: str, metrics: AgentMetrics,
                 tally: RunTally) -> None:
        super().__init__()
        self._tally = tally
        self._provider = provider
        self._model = model
        self._label = f"{provider}:{model}"
        self._metrics = metrics

    @property
    def name(self) -> str:
        return "AgentExecutorAccounting"

    async def awrap_model_call(
        self, request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ExtendedModelResponse[Any]:
        thread, limits = _run_limits()
        state_calls = request.state.get(USAGE_KEY)
        self._tally.check_and_reserve(
            thread, state_calls if isinstance(state_calls, Mapping) else {}, limits)
        clock = time.perf_counter()
        outcome = "error"
        try:
            response = await handler(request)
            outcome = "success"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            if outcome != "success":
                self._tally.settle(thread, None, None)
                self._metrics.model_call(self._provider, self._model, outcome,
                                         time.perf_counter() - clock, 0, 0)
        message = next((m for m in reversed(response.result) if isinstance(m, AIMessage)),
                       None)
        tokens = message.usage_metadata if message is not None else None
        input_tokens = int(tokens.get("input_tokens", 0)) if tokens else 0
        output_tokens = int(tokens.get("output_tokens", 0)) if tokens else 0
        call: dict[str, Any] = {"model": self._label, "input_tokens": input_tokens,
                                "output_tokens": output_tokens}
        self._metrics.model_call(self._provider, self._model, outcome,
                                 time.perf_counter() - clock, input_tokens, output_tokens)
        key = (message.id if message is not None else None) or f"call-{uuid.uuid4()}"
        self._tally.settle(thread, key, call)
        return ExtendedModelResponse(model_response=response,
                                     command=Command(update={USAGE_KEY: {key: call}}))


def _run_limits() -> tuple[str, Limits]:
    """The run's thread and budget."""
    try:
        config = get_config()
    except RuntimeError:  # outside a graph run
        return "", Limits()
    metadata = config.get("metadata") or {}
    thread = str((config.get("configurable") or {}).get("thread_id", ""))
    calls, tokens = metadata.get("max_model_calls"), metadata.get("max_total_tokens")
    return thread, Limits(calls if isinstance(calls, int) else None,
                          tokens if isinstance(tokens, int) else None)
