"""LangSmith bookkeeping inline while tracing is off.

langchain's agent middleware wraps every model and tool call in LangSmith's
`traceable`, which sets up and closes a run in a worker thread (two thread round
trips per wrapper, several wrappers per call) even when tracing is off. Then
there is nothing in them that blocks, and the hops cost a fifth to a third of an
agent's CPU; `run_tracing_bookkeeping_inline` makes them run in place. With
tracing on (LANGSMITH_TRACING) LangSmith's own thread hop is kept.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

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
