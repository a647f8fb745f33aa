from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from agent_executor.domain.events import StreamEvent


class EventWriter(Protocol):
    """Appends one job's events; numbers them `seq` 1, 2, ... gapless across resumes.

    Never raises for a broken stream backend: losing live events must not fail a
    job, so the adapter counts and logs the loss instead. Only one writer per
    job is live at a time (the ledger lease guarantees it).

    A job's stream has one `end`, its last event: once an `end` is in the stream
    (from this writer or any other), `emit` of anything, `end` included, appends
    nothing. Emitting `end` again is therefore safe (idempotent).
    """

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Append an event (may be buffered; order is kept)."""
        ...

    async def aclose(self) -> None:
        """Flush what is buffered. Returns within a bounded time; an adapter that could
        not deliver may keep delivering in the background (bounded) after it returns."""
        ...


class EventStream(Protocol):
    """Live stream and replay buffer of every job's events."""

    async def writer(self, job_id: str, trace_id: str) -> EventWriter:
        """A writer that continues the job's `seq` where earlier attempts stopped."""
        ...

    def follow(self, job_id: str, after_seq: int = 0, *,
               live: bool = True) -> AsyncIterator[StreamEvent]:
        """Events with `seq > after_seq`: the replay buffer, then (if `live`) new ones
        as they come, with no gap or repeat in between; ends after the `end` event
        (at once when `after_seq` is already at or past it).

        With `live=False` only the buffered events are yielded. Best effort: when
        the backend is unavailable it ends early (logged) instead of raising; a
        caller that must tell "no more events" from "cannot read" uses `subscribe`.
        """
        ...

    async def subscribe(self, job_id: str, after_seq: int = 0, *,
                        live: bool = True) -> AsyncIterator[StreamEvent]:
        """`follow`, strict: the subscription (if `live`) and the first read of the
        replay buffer happen before this returns, and raise `DependencyUnavailable`
        when they cannot be done (so an HTTP answer can still be a 503). The
        returned iterator raises `DependencyUnavailable` if the stream breaks later
        (backend lost for good, or the follower fell too far behind); the caller
        resumes with the last `seq` it saw."""
        ...

    async def has_end(self, job_id: str) -> bool:
        """Whether the job's stream holds its `end` now. Raises `DependencyUnavailable`
        when the backend cannot be read (an outbox retries later)."""
        ...
