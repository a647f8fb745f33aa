"""sse_stream: frames, and a stream that breaks mid-response ends with an error frame."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from agent_executor.adapters.http.sse import sse_stream
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END, LLM_STREAM, StreamEvent


def _event(seq: int, event_type: str = LLM_STREAM) -> StreamEvent:
    return StreamEvent(event_type, "job-1", "trace", seq, "2026-01-01T00:00:00.000Z",
                       {"agent": "a", "content": str(seq)})


async def _events(*events: StreamEvent, error: Exception | None = None
                  ) -> AsyncIterator[StreamEvent]:
    for event in events:
        yield event
    if error is not None:
        raise error


async def _frames(events: AsyncIterator[StreamEvent]) -> list[str]:
    return [chunk.decode() async for chunk in sse_stream(events)]


async def test_events_are_frames_with_seq_as_id_and_the_stream_ends_after_end() -> None:
    frames = await _frames(_events(_event(1), _event(2, END)))
    assert frames[0] == "retry: 2000\n\n"
    assert frames[1].startswith("id: 1\nevent: on_llm_stream\ndata: {")
    assert json.loads(frames[2].split("data: ", 1)[1])["event_type"] == END
    assert len(frames) == 3  # no error frame


async def test_a_stream_that_breaks_ends_with_retry_and_an_error_frame_without_id() -> None:
    """Before: the response just ended (or the connection was reset), so a client
    could not tell a broken stream from a finished one."""
    broken = _events(_event(1), _event(2), error=DependencyUnavailable("Dragonfly lost"))
    frames = await _frames(broken)
    assert [f.split("\n", 1)[0] for f in frames[1:3]] == ["id: 1", "id: 2"]
    last = frames[-1]
    assert last.startswith("retry: 2000\nevent: error\ndata: ")
    assert "id:" not in last  # Last-Event-ID stays 2
    body = json.loads(last.split("data: ", 1)[1])
    assert "Dragonfly lost" in body["error"] and body["details"] == []


async def test_a_bug_in_the_stream_is_an_error_frame_too() -> None:
    frames = await _frames(_events(_event(1), error=RuntimeError("boom")))
    assert frames[-1].startswith("retry: 2000\nevent: error\n")
    assert "boom" not in frames[-1]
