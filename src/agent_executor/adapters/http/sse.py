"""Server-sent events from a job's stream, with keep-alive comments while idle.

A stream that breaks after the response has started (Dragonfly lost for good, a
follower too far behind) is never cut off silently: the last frames are a
`retry:` hint and an `event: error` frame whose data is the usual JSON error
body (no `id`, so the client's Last-Event-ID stays the last `seq` it got); the
client reconnects with it and resumes without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from agent_executor.domain.errors import AgentExecutorError
from agent_executor.domain.events import StreamEvent

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
_DONE = object()


def format_event(event: StreamEvent) -> bytes:
    payload = json.dumps(event.to_data(), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.event_type}\ndata: {payload}\n\n".encode()


def format_error(message: str) -> bytes:
    payload = json.dumps({"error": message, "details": []}, separators=(",", ":"))
    return f"retry: {RETRY_MILLISECONDS}\nevent: error\ndata: {payload}\n\n".encode()


async def sse_stream(events: AsyncIterator[StreamEvent],
                     keepalive_seconds: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    """Each event as an SSE frame (`id` = seq); a comment line every idle
    `keepalive_seconds` so proxies keep the connection open; an error frame
    (module docstring) if the stream breaks."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(pump())
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive_seconds)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is _DONE:
                break
            assert isinstance(item, StreamEvent)
            yield format_event(item)
        error = task.exception() if task.done() and not task.cancelled() else None
        if isinstance(error, AgentExecutorError):
            logger.warning("event stream broke mid-response: %s", error)
            yield format_error(f"the event stream broke: {error}; reconnect with Last-Event-ID")
        elif error is not None:
            logger.error("event stream failed mid-response", exc_info=error)
            yield format_error("internal error; reconnect with Last-Event-ID")
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
