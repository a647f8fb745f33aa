from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from agent_executor.domain.events import StreamEvent


class EventWriter(Protocol):
    """Appends one job's events; numbers them `seq` 1, 2, ... gapless across resumes.

    Never raises for a broken stream backend: losing live events must not fail a
    job, so the adapter counts and logs the loss instead. Only one writer per
    job is live at a time (the ledger lease guarantees it).
    """

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Append an event (may be buffered; order is kept)."""
        ...

    async def aclose(self) -> None:
        """Flush what is buffered."""
        ...


class EventStream(Protocol):
    """Live stream and replay buffer of every job's events."""

    async def writer(self, job_id: str, trace_id: str) -> EventWriter:
        """A writer that continues the job's `seq` where earlier attempts stopped."""
        ...

    async def has_end(self, job_id: str) -> bool:
        """Whether the job's stream holds its `end` event; raises
        `DependencyUnavailable` when the backend cannot tell."""
        ...

    def follow(self, job_id: str, after_seq: int = 0, *,
               live: bool = True) -> AsyncIterator[StreamEvent]:
        """Events with `seq > after_seq`: the replay buffer, then (if `live`) new ones
        as they come, with no gap or repeat in between; ends after the `end` event.

        With `live=False` only the buffered events are yielded.
        """
        ...
