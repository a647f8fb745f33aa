"""LangSmith's bookkeeping only where LangSmith tracing is on.

langchain's `create_agent` wraps every middleware's model and tool call hook in
LangSmith's `traceable`, which sets up and closes a run around each call even
when tracing is off (by default in a worker thread: two thread round trips per
wrapper, several wrappers per call, a fifth to a third of an agent's CPU).

- `run_tracing_bookkeeping_inline` makes that bookkeeping run in place when
  tracing is off: nothing in it blocks then.
- `build_untraced_unless_tracing` makes `create_agent` leave the hooks unwrapped
  when LangSmith tracing is off as the agent is built, so they cost nothing at
  all; an agent built with tracing on (LANGSMITH_TRACING) gets LangSmith's own
  wrappers and thread hop. The service's own tracing (OpenTelemetry) is a
  callback handler on the run and needs neither.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import langchain.agents.factory as agent_factory
import langsmith
from langsmith.utils import tracing_is_enabled

DefaultToThread = Callable[..., Awaitable[Any]]


async def _inline_unless_tracing(default: DefaultToThread, ctx: contextvars.Context,
                                 func: Callable[..., Any], /, *args: Any,
                                 **kwargs: Any) -> Any:
    if tracing_is_enabled():
        return await default(ctx, func, *args, **kwargs)
    return ctx.run(func, *args, **kwargs)


def run_tracing_bookkeeping_inline() -> None:
    """Install the override (process-wide, idempotent)."""
    langsmith.set_runtime_overrides(aio_to_thread=_inline_unless_tracing)


def _traceable_when_tracing(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """`traceable` as `create_agent` calls it: LangSmith's own while tracing is on,
    else the hook itself."""
    if tracing_is_enabled():
        return langsmith.traceable(*args, **kwargs)  # type: ignore[no-any-return]
    return _unwrapped


def _unwrapped(hook: Any) -> Any:
    return hook


def build_untraced_unless_tracing() -> None:
    """Install it where `create_agent` looks `traceable` up (process-wide, idempotent)."""
    if hasattr(agent_factory, "traceable"):
        agent_factory.traceable = _traceable_when_tracing
