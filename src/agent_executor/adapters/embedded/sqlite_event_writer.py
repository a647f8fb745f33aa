"""`SqliteEventWriter`: one job's events, buffered; `SqliteEventStream.append` writes
each batch in one transaction (and numbers it there)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import utc_timestamp

if TYPE_CHECKING:
    from agent_executor.adapters.embedded.sqlite_event_stream import SqliteEventStream

Pending = tuple[str, str, dict[str, Any]]  # (event_type, ts, data)


class SqliteEventWriter:
    """Implements `EventWriter` for one job: buffered, one transaction per batch."""

    def __init__(self, stream: SqliteEventStream, job_id: str, trace_id: str,
                 run: int) -> None:
        self._stream = stream
        self.job_id = job_id
        self.trace_id = trace_id
        self.run = run
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.closed = False
        self.published = 0
        self.lost = 0

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        if self.closed:
            return
        self._pending.append((event_type, utc_timestamp(), _json_values(data)))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(),
                                                name=f"stream-flusher:{self.job_id}")
        self._wake.set()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        try:
            if self._flusher is not None:
                await self._flusher
        finally:
            self._stream.writer_closed(self.job_id)

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    self.published += await self._stream.append(self.job_id, self.trace_id,
                                                                 self.run, batch)
                except DependencyUnavailable as exc:  # losing events never fails the job
                    self.lost += len(batch)
                    self._stream.lost(len(batch), exc, self.job_id)
            if self.closed:
                return


def _json_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy holding JSON values only, exactly what a follower will read back."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    except ValueError as exc:
        return {"unserialisable": str(exc)}
    return copied
