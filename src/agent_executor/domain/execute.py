"""The one use case: execute a job, whichever transport brought it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent_executor.domain import events as ev
from agent_executor.domain.errors import (
    AgentError,
    DependencyUnavailable,
    JobFailure,
    JobTimeout,
    LeaseLost,
)
from agent_executor.domain.job import Job
from agent_executor.domain.result import ErrorInfo, JobRecord, JobResult
from agent_executor.ports.events import EventStream, EventWriter
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.metrics import JobMetrics
from agent_executor.ports.publisher import ResultPublisher
from agent_executor.ports.runtime import AgentRuntime

logger = logging.getLogger(__name__)


class ExecuteJob:
    """Claim the job, run (or resume) its agent, record and publish its one result.

    - A finished job is not run again: its recorded result is published again
      and returned.
    - Concurrency is bounded by `max_concurrent`; a claimed job waiting for a
      slot keeps its lease alive.
    - `JobFailure` from the runtime and a timeout end the job as `failed`;
      `DependencyUnavailable` and `LeaseLost` leave it unfinished (lease given
      back where possible) and propagate, so the transport retries later.
    """

    def __init__(self, ledger: JobLedger, runtime: AgentRuntime, events: EventStream,
                 publisher: ResultPublisher, metrics: JobMetrics, *, owner: str,
                 max_concurrent: int, job_timeout_seconds: float,
                 lease_seconds: float = 30.0) -> None:
        self._ledger = ledger
        self._runtime = runtime
        self._events = events
        self._publisher = publisher
        self._metrics = metrics
        self.owner = owner
        self.max_concurrent = max_concurrent
        self.job_timeout_seconds = job_timeout_seconds
        self.lease_seconds = lease_seconds
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0

    @property
    def free_slots(self) -> int:
        """Slots not taken or promised to a job already waiting for one."""
        return max(0, self._slots._value - self._waiting)  # noqa: SLF001

    async def execute(self, job: Job, source: str) -> JobResult:
        """Claim and run; raises `JobConflict` if the job runs elsewhere."""
        record = await self.claim(job, source)
        if record.result is not None:
            return record.result
        return await self.run_claimed(job, record)

    async def claim(self, job: Job, source: str) -> JobRecord:
        """Take the job's lease. A finished job's result is published again."""
        record = await self._ledger.claim(job, source, self.owner, self.lease_seconds)
        if record.result is not None:
            logger.info("job already %s; publishing its recorded result again",
                        record.status, extra={"job_id": job.job_id, "trace_id": job.trace_id})
            await self._ensure_end_event(job, record.result)
            await self._publisher.publish(record.result)
        return record

    async def _ensure_end_event(self, job: Job, result: JobResult) -> None:
        """A process that died between recording the result and sending `end` left the
        stream without its last event: send it now, unless it is there already."""
        async for event in self._events.follow(job.job_id, 0, live=False):
            if event.event_type == ev.END:
                return
        writer = await self._events.writer(job.job_id, job.trace_id)
        try:
            await writer.emit(ev.END, _end_data(result))
        finally:
            await writer.aclose()

    async def run_claimed(self, job: Job, record: JobRecord) -> JobResult:
        """Run a job whose lease `claim` took; publishes and returns its result."""
        renewer = asyncio.create_task(self._keep_lease(job.job_id))
        try:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                result = await self._run(job, record, renewer)
            finally:
                self._slots.release()
        except BaseException:
            renewer.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.lease_seconds / 3):
                    await self._ledger.release(job.job_id, self.owner)
            raise
        renewer.cancel()
        await self._publisher.publish(result)
        return result

    async def _run(self, job: Job, record: JobRecord, renewer: asyncio.Task[None]) -> JobResult:
        log = {"job_id": job.job_id, "trace_id": job.trace_id}
        started = record.started_at or datetime.now(UTC)
        remaining = self.job_timeout_seconds - (datetime.now(UTC) - started).total_seconds()
        writer = await self._events.writer(job.job_id, job.trace_id)
        self._metrics.job_started(record.source)
        clock = time.monotonic()
        status = "interrupted"
        try:
            result = await self._attempt(job, record, writer, remaining, renewer)
            result = await self._ledger.finish(job.job_id, self.owner, result)
            status = result.status
            await writer.emit(ev.END, _end_data(result))
            logger.info("job %s after %d attempt(s)", status, result.attempts, extra=log)
            return result
        finally:
            self._metrics.job_finished(record.source, status, time.monotonic() - clock)
            await writer.aclose()

    async def _attempt(self, job: Job, record: JobRecord, writer: EventWriter,
                       remaining: float, renewer: asyncio.Task[None]) -> JobResult:
        started = record.started_at or datetime.now(UTC)
        try:
            if remaining <= 0:
                raise TimeoutError
            run = asyncio.ensure_future(self._runtime.run(job, writer.emit))
            done, _ = await asyncio.wait({run, renewer}, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            if run not in done:
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
                if renewer in done:
                    renewer.result()  # raises LeaseLost or the dependency error
                raise TimeoutError
            output = run.result()
            duration_ms = int((datetime.now(UTC) - started).total_seconds() * 1000)
            return JobResult.completed(job.job_id, job.trace_id, record.attempts, output,
                                       duration_ms)
        except (DependencyUnavailable, LeaseLost, asyncio.CancelledError):
            raise
        except TimeoutError:
            failure: JobFailure = JobTimeout(
                f"job ran longer than JOB_TIMEOUT_SECONDS ({self.job_timeout_seconds:g}s)")
        except JobFailure as exc:
            failure = exc
        except Exception as exc:
            logger.exception("agent raised unexpectedly",
                             extra={"job_id": job.job_id, "trace_id": job.trace_id})
            failure = AgentError(f"{type(exc).__name__}: {exc}")
        duration_ms = int((datetime.now(UTC) - started).total_seconds() * 1000)
        return JobResult.failed(job.job_id, job.trace_id, record.attempts,
                                ErrorInfo.from_failure(failure), duration_ms)

    async def _keep_lease(self, job_id: str) -> None:
        """Renew every third of the lease. The run must stop before the lease can
        expire in the ledger, or another worker could take the job over while this one
        still runs it: so each renewal, however long the ledger takes to answer, is
        bounded by a deadline a third of a lease short of the last known expiry, and
        missing it stops the run."""
        interval = self.lease_seconds / 3
        deadline = time.monotonic() + self.lease_seconds - interval
        while True:
            await asyncio.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            attempt = time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, deadline - attempt)):
                    await self._ledger.renew(job_id, self.owner, self.lease_seconds)
                deadline = attempt + self.lease_seconds - interval
            except (DependencyUnavailable, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise DependencyUnavailable(
                        f"the job's lease could not be renewed in time ({exc or 'no answer'}); "
                        "stopping so that no other worker runs it at the same time") from exc
                logger.warning("lease renewal failed (%s); retrying", exc,
                               extra={"job_id": job_id})


def _end_data(result: JobResult) -> Mapping[str, Any]:
    data: dict[str, Any] = {"status": result.status}
    if result.output is not None:
        data["result"] = result.output.to_data()
    if result.error is not None:
        data["error"] = result.error.to_data()
    return data
