from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from agent_executor.domain.events import StreamEvent


class EventWriter(Protocol):
    """Appends one run's events to its job's stream; numbers them `seq` 1, 2, ... gapless
    across resumes and runs (one counter per job).

    Never raises for a broken stream backend: losing live events must not fail a
    job, so the adapter counts and logs the loss instead. Only one writer per
    job is live at a time (the ledger lease guarantees it).

    A writer belongs to one run of the job (`EventStream.writer(..., run=n)`). A run
    has one `end`, its last event, whose data carries `"run": n` (`end_data`), and the
    runs' ends come in order: once the stream holds the `end` of run n or of a later
    run (from this writer or any other), `emit` of anything by a writer of run n, `end`
    included, appends nothing. Emitting `end` again is therefore safe (idempotent), and
    what a stale writer of a finished run still sends never lands in the next run.
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

    async def writer(self, job_id: str, trace_id: str, *, run: int) -> EventWriter:
        """A writer for run `run` (`JobRecord.run`) that continues the job's `seq` where
        earlier attempts and runs stopped."""
        ...

    def follow(self, job_id: str, after_seq: int = 0, *, live: bool = True,
               until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """Events with `seq > after_seq`: the replay buffer, then (if `live`) new ones
        as they come, with no gap or repeat in between; ends after the first `end` of
        run `until_run` or a later run (`domain.events.ends_run`): earlier runs' ends
        are passed on, not stopped at. It ends at once when nothing follows `after_seq`
        and the stream already holds such an `end` (`has_end(job_id, until_run)`).

        A follower of the job's latest run passes its run (`JobRecord.run`) as
        `until_run`; a job retried while it follows does not move it on: it stops at
        the end of the run it asked for (the caller reads the ledger again to go on).

        With `live=False` only the buffered events are yielded. Best effort: when
        the backend is unavailable it ends early (logged) instead of raising; a
        caller that must tell "no more events" from "cannot read" uses `subscribe`.
        """
        ...

    async def subscribe(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                        until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """`follow`, strict: the subscription (if `live`) and the first read of the
        replay buffer happen before this returns, and raise `DependencyUnavailable`
        when they cannot be done (so an HTTP answer can still be a 503). The
        returned iterator raises `DependencyUnavailable` if the stream breaks later
        (backend lost for good, or the follower fell too far behind); the caller
        resumes with the last `seq` it saw."""
        ...

    async def has_end(self, job_id: str, run: int) -> bool:
        """Whether the job's stream holds the `end` of run `run` now, or of a later run
        (runs end in order, so that run is over too). Raises `DependencyUnavailable`
        when the backend cannot be read (an outbox retries later)."""
        ...
