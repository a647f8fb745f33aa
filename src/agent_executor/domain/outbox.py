"""Results go out from the ledger: recorded first, then delivered, then marked.

A result is delivered when the job's stream holds its run's `end` and the result
event is on the bus; only then is it marked published. A process that dies in
between leaves it unmarked, and `flush` in any live process delivers it again
(publishing twice is harmless: the event id is the same, CONTRACT section 5).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from agent_executor.domain import events as ev
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import StreamEvent, utc_timestamp
from agent_executor.domain.result import JobResult
from agent_executor.ports.events import EventStream
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.publisher import ResultPublisher

logger = logging.getLogger(__name__)


class ResultOutbox:
    def __init__(self, ledger: JobLedger, events: EventStream,
                 publisher: ResultPublisher) -> None:
        self._ledger = ledger
        self._events = events
        self._publisher = publisher

    async def deliver(self, result: JobResult) -> None:
        """End the run's stream (if it lacks its `end`), publish, mark published. Raises
        `DependencyUnavailable` when the bus does not take the result; a stream that
        cannot be reached leaves the result unmarked, so it is delivered again later."""
        # an interrupt is no end: the run goes on when it is resumed
        ended = await self._ensure_end(result) if result.finished else True
        await self._publisher.publish(result)
        if not ended:
            return
        try:
            await self._ledger.mark_published(result.job_id, result.event_id)
        except DependencyUnavailable as exc:  # delivered again later: harmless
            logger.warning("result published but not marked so (%s)", exc,
                           extra={"job_id": result.job_id, "trace_id": result.trace_id})

    async def flush(self, older_than_seconds: float, limit: int = 100) -> int:
        """Deliver results recorded at least `older_than_seconds` ago and never marked
        published; returns how many went out. Stops at the first bus failure."""
        delivered = 0
        for result in await self._ledger.unpublished(older_than_seconds, limit):
            logger.info("delivering a recorded %s result that was never published",
                        result.status, extra={"job_id": result.job_id,
                                              "trace_id": result.trace_id})
            await self.deliver(result)
            delivered += 1
        return delivered

    async def _ensure_end(self, result: JobResult) -> bool:
        """True once the stream is known to hold the `end` of the result's run."""
        try:
            if await self._events.has_end(result.job_id, result.run):
                return True
            writer = await self._events.writer(result.job_id, result.trace_id, run=result.run)
            try:
                await writer.emit(ev.END, end_data(result))
            finally:
                await writer.aclose()
            return await self._events.has_end(result.job_id, result.run)
        except DependencyUnavailable as exc:
            logger.warning("the stream's end could not be confirmed (%s); it is sent again "
                           "once the stream is back", exc,
                           extra={"job_id": result.job_id, "trace_id": result.trace_id})
            return False


def end_data(result: JobResult) -> Mapping[str, Any]:
    """The `end` event's data (CONTRACT section 7)."""
    data: dict[str, Any] = {"status": result.status, "run": result.run}
    if result.reason is not None:
        data["reason"] = result.reason
    if result.output is not None:
        data["result"] = result.output.to_data()
    if result.error is not None:
        data["error"] = result.error.to_data()
    return data


async def replay_finished(events: EventStream, result: JobResult,
                          after_seq: int) -> AsyncIterator[StreamEvent]:
    """A finished job's events after `after_seq`, always closed by the `end` of its
    latest run (`result.run`; earlier runs' ends pass by): when what could be read lacks
    it (lost with Dragonfly, expired, or unreadable right now), one is built from the
    ledger's result, numbered after the last event seen; a client resuming past that
    `end` gets nothing more."""
    last = after_seq
    async for event in events.follow(result.job_id, after_seq, live=False,
                                     until_run=result.run):
        last = event.seq
        yield event
        if ev.ends_run(event, result.run):
            return
    if after_seq > 0:  # a client resuming: had it seen the end already?
        try:
            if await events.has_end(result.job_id, result.run):
                return
        except DependencyUnavailable:
            pass
    yield StreamEvent(ev.END, result.job_id, result.trace_id, last + 1, utc_timestamp(),
                      end_data(result))
