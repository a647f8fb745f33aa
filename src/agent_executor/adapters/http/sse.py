"""Server-sent events from a job's stream, with keep-alive comments while idle."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from agent_executor.domain.events import StreamEvent

KEEPALIVE_SECONDS = 15.0
_DONE = object()


def format_event(event: StreamEvent) -> bytes:
    payload = json.dumps(event.to_data(), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.event_type}\ndata: {payload}\n\n".encode()


async def sse_stream(events: AsyncIterator[StreamEvent],
                     keepalive_seconds: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    """Each event as an SSE frame (`id` = seq); a comment line every idle
    `keepalive_seconds` so proxies keep the connection open."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(pump())
    try:
        yield b"retry: 2000\n\n"
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
        task.result()  # surfaces an error of the stream
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
