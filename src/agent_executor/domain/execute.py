"""The one use case: execute a job, whichever transport brought it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from agent_executor.domain import events as ev
from agent_executor.domain.capacity import Capacity, Slot
from agent_executor.domain.errors import (
    AgentError,
    AttemptsExhausted,
    DependencyUnavailable,
    JobFailure,
    JobFinished,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    WrongJobState,
)
from agent_executor.domain.interrupts import Interrupt, Resume, read_decisions
from agent_executor.domain.job import Job
from agent_executor.domain.lease import NoBroadcast, keep_lease
from agent_executor.domain.outbox import ResultOutbox, end_data
from agent_executor.domain.result import AgentOutput, ErrorInfo, JobRecord, JobResult
from agent_executor.domain.untraced import UNTRACED
from agent_executor.ports.events import EventStream, EventWriter
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.metrics import JobMetrics
from agent_executor.ports.publisher import ResultPublisher
from agent_executor.ports.runtime import AgentRuntime
from agent_executor.ports.signals import CancelBroadcast
from agent_executor.ports.tracing import JobSpan, JobTracer

logger = logging.getLogger(__name__)


class ExecuteJob:
    """Claim the job, run (or resume) its agent, record and deliver its one result.

    - A finished job is not run again: its recorded result is delivered again and
      returned.
    - Concurrency is bounded by `capacity`; a claimed job waiting for a slot keeps
      its lease alive.
    - A claim past `max_attempts` ends the job `failed` (`AttemptsExhausted`)
      without running it: a job that kills its worker cannot take the fleet down.
    - `JobFailure` from the runtime and a timeout end the job as `failed`;
      `DependencyUnavailable` and `LeaseLost` leave it unfinished (lease given
      back where possible) and propagate, so the transport retries later.
    - Every result is recorded before it is published (`ResultOutbox`).
    """

    def __init__(self, ledger: JobLedger, runtime: AgentRuntime, events: EventStream,
                 publisher: ResultPublisher, metrics: JobMetrics, *, owner: str,
                 max_concurrent: int, job_timeout_seconds: float,
                 lease_seconds: float = 30.0, max_attempts: int = 5,
                 broadcast: CancelBroadcast | None = None,
                 tracer: JobTracer = UNTRACED) -> None:
        self._ledger = ledger
        self._runtime = runtime
        self._events = events
        self._metrics = metrics
        self.outbox = ResultOutbox(ledger, events, publisher)
        self.owner = owner
        self.capacity = Capacity(max_concurrent)
        self.job_timeout_seconds = job_timeout_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._broadcast: CancelBroadcast = broadcast or NoBroadcast()
        self._tracer = tracer
        self._cancel_requests: dict[str, asyncio.Event] = {}
        self.woken = asyncio.Event()
        """Set when a job became pending here (resumed, retried): claim it now."""

    @property
    def free_slots(self) -> int:
        """Slots not taken or promised to a job already waiting for one."""
        return self.capacity.free

    async def execute(self, job: Job, source: str) -> JobResult:
        """Claim and run; raises `JobConflict` if the job runs elsewhere."""
        record = await self.claim(job, source)
        if record.settled is not None:
            return record.settled
        return await self.run_claimed(job, record)

    async def claim(self, job: Job, source: str) -> JobRecord:
        """Take the job's lease. A finished job's result (an interrupted job's pending
        interrupt) is delivered again instead."""
        record = await self._ledger.claim(job, source, self.owner, self.lease_seconds)
        if record.settled is not None:
            logger.info("job already %s; publishing its recorded result again",
                        record.status, extra={"job_id": job.job_id, "trace_id": job.trace_id})
            await self.outbox.deliver(record.settled)
        return record

    async def give_up(self, job: Job, source: str, error: ErrorInfo) -> JobResult:
        """End a job that no worker runs with a `failed` result: recorded first, then
        delivered. A finished job keeps (and delivers again) its recorded result; a
        job running under a live lease raises `JobConflict` (it ends on its own)."""
        record = await self._ledger.get(job.job_id)
        if record is not None and record.settled is not None:
            await self.outbox.deliver(record.settled)
            return record.settled
        attempts = record.attempts if record is not None else 0
        failed = await self._with_usage(job, replace(
            JobResult.failed(job.job_id, job.trace_id, attempts, error),
            run=record.run if record is not None else 1))
        recorded = await self._ledger.abandon(job, source, failed)
        if recorded == failed:
            logger.warning("gave up on the job: %s: %s", error.type, error.message,
                           extra={"job_id": job.job_id, "trace_id": job.trace_id})
            self._metrics.job_finished(source, failed.status, None, error.type)
        await self.outbox.deliver(recorded)
        return recorded

    async def cancel(self, job_id: str, reason: str, *, keep_unknown: bool = False
                     ) -> JobRecord:
        """Cancel a job wherever it is: a pending one ends `cancelled` at once (its
        result delivered), a running one is told through the ledger and the broadcast,
        and its runner stops it at the next await and records the `cancelled` result.
        Raises `JobNotFound` (unless `keep_unknown`) or `JobFinished`."""
        record = await self._ledger.cancel(job_id, reason, keep_unknown=keep_unknown)
        log = {"job_id": job_id, "trace_id": record.trace_id}
        if record.result is not None:
            logger.info("job cancelled before it ran: %s", reason, extra=log)
            self._metrics.job_finished(record.source, "cancelled", None)
            await self.outbox.deliver(record.result)
        else:
            logger.info("cancel asked for while the job runs: %s", reason, extra=log)
            self.notice_cancel(job_id)
            await self._broadcast.announce(job_id)
        return record

    async def resume(self, job_id: str, interrupt_id: object, decisions: object) -> JobRecord:
        """Record the decisions for the interrupted job's pending interrupt; the job is
        then pending, and whichever replica claims it first (`woken` tells this one's
        reaper at once) continues its thread with them. Raises `JobNotFound`,
        `WrongJobState` (not interrupted, or `interrupt_id` is not the pending one) or
        `InvalidRequest` (decisions malformed, of a kind not allowed, or not one per
        pending tool call)."""
        record = await self._ledger.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        pending = record.result.interrupt if record.result is not None else None
        if record.status != "interrupted" or pending is None:
            raise WrongJobState(f"job {job_id} is {record.status}, not interrupted: "
                                "there is nothing to resume")
        interrupt = Interrupt.from_data(pending)
        if not isinstance(interrupt_id, str) or interrupt_id != interrupt.interrupt_id:
            raise WrongJobState(f"job {job_id} waits on interrupt {interrupt.interrupt_id}, "
                                f"not {interrupt_id!r}")
        chosen = read_decisions(decisions, interrupt)
        record = await self._ledger.resume(job_id, Resume(interrupt.interrupt_id, chosen))
        logger.info("job resumed with %s", ", ".join(d.type for d in chosen),
                    extra={"job_id": job_id, "trace_id": record.trace_id})
        self.woken.set()
        return record

    async def retry(self, job_id: str) -> JobRecord:
        """Start the failed or cancelled job's next run (from its last checkpoint); any
        replica may claim it (`woken` tells this one's reaper at once). Raises
        `JobNotFound` or `WrongJobState`."""
        record = await self._ledger.retry(job_id)
        logger.info("job retried: run %d", record.run,
                    extra={"job_id": job_id, "trace_id": record.trace_id})
        self.woken.set()
        return record

    def notice_cancel(self, job_id: str) -> None:
        """A cancel was asked for `job_id`: stop it if it runs (or waits) here."""
        requested = self._cancel_requests.get(job_id)
        if requested is not None:
            requested.set()

    async def listen_for_cancels(self) -> None:
        """Until cancelled: stop jobs of this process that another replica cancels."""
        await self._broadcast.listen(self.notice_cancel)

    async def run_claimed(self, job: Job, record: JobRecord,
                          slot: Slot | None = None) -> JobResult:
        """Run a job whose lease `claim` took, in `slot` (or one it waits for);
        delivers and returns its result. The slot is given back either way."""
        cancelled = self._cancel_requests.setdefault(job.job_id, asyncio.Event())
        if record.cancel_reason is not None:
            cancelled.set()
        renewer = asyncio.create_task(keep_lease(self._ledger, job.job_id, self.owner,
                                                 self.lease_seconds, cancelled))
        try:
            try:
                if record.attempts_this_run > self.max_attempts:
                    result = await self._exhausted(job, record)
                else:
                    slot = slot or await self._slot_unless(cancelled)
                    if slot is None or cancelled.is_set():
                        result = await self._cancelled_unstarted(job, record)
                    else:
                        result = await self._run(job, record, renewer, cancelled)
            finally:
                if slot is not None:
                    slot.release()
        except BaseException:
            renewer.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.lease_seconds / 3):
                    await self._ledger.release(job.job_id, self.owner)
            raise
        finally:
            self._cancel_requests.pop(job.job_id, None)
        renewer.cancel()
        await self.outbox.deliver(result)
        return result

    async def _slot_unless(self, cancelled: asyncio.Event) -> Slot | None:
        """A slot, or None when the job is cancelled while it waits for one."""
        acquire = asyncio.ensure_future(self.capacity.acquire())
        stop = asyncio.ensure_future(cancelled.wait())
        self._metrics.job_waiting(1)
        try:
            done, _ = await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._metrics.job_waiting(-1)
            stop.cancel()
            if not acquire.done():
                acquire.cancel()
        if acquire in done:
            return acquire.result()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        return None

    async def _cancel_reason(self, job_id: str) -> str:
        with contextlib.suppress(DependencyUnavailable):
            record = await self._ledger.get(job_id)
            if record is not None and record.cancel_reason:
                return record.cancel_reason
        return "cancelled on request"

    async def _cancelled_unstarted(self, job: Job, record: JobRecord) -> JobResult:
        result = replace(JobResult.cancelled(job.job_id, job.trace_id, record.attempts,
                                             await self._cancel_reason(job.job_id)),
                         run=record.run)
        result = await self._ledger.finish(job.job_id, self.owner,
                                           await self._with_usage(job, result))
        logger.info("job cancelled before it started", extra={"job_id": job.job_id,
                                                              "trace_id": job.trace_id})
        self._metrics.job_finished(record.source, result.status, None)
        return result

    async def _exhausted(self, job: Job, record: JobRecord) -> JobResult:
        failure = AttemptsExhausted(
            f"the job was claimed {record.attempts_this_run} times in this run, more than "
            f"MAX_JOB_ATTEMPTS ({self.max_attempts}), after its workers stopped or crashed "
            "mid-run; it is not run again")
        result = replace(JobResult.failed(job.job_id, job.trace_id, record.attempts - 1,
                                          ErrorInfo.from_failure(failure)), run=record.run)
        result = await self._ledger.finish(job.job_id, self.owner,
                                           await self._with_usage(job, result))
        logger.warning("job failed: %s", failure.message,
                       extra={"job_id": job.job_id, "trace_id": job.trace_id})
        self._metrics.job_started(record.source)
        self._metrics.job_finished(record.source, result.status, None, failure.error_type)
        return result

    async def _run(self, job: Job, record: JobRecord, renewer: asyncio.Task[None],
                   cancelled: asyncio.Event) -> JobResult:
        with self._tracer.job_span(job, source=record.source, run=record.run,
                                   attempt=record.attempts) as span:
            result = await self._run_in_span(job, record, renewer, cancelled, span)
            span.ended(result.status)
            return result

    async def _with_usage(self, job: Job, result: JobResult) -> JobResult:
        """`result` with what the job's thread spent (CONTRACT section 6)."""
        try:
            return replace(result, usage=await self._runtime.usage(job))
        except DependencyUnavailable as exc:
            logger.warning("the job's usage could not be read: %s", exc,
                           extra={"job_id": job.job_id, "trace_id": job.trace_id})
            return result

    async def _run_in_span(self, job: Job, record: JobRecord, renewer: asyncio.Task[None],
                           cancelled: asyncio.Event, span: JobSpan) -> JobResult:
        log = {"job_id": job.job_id, "trace_id": job.trace_id}
        started = record.started_at or datetime.now(UTC)
        remaining = self.job_timeout_seconds - (datetime.now(UTC) - started).total_seconds()
        writer = await self._events.writer(job.job_id, job.trace_id, run=record.run)
        self._metrics.job_started(record.source)
        clock = time.monotonic()
        status, error_type = "unfinished", None
        try:
            result = replace(await self._attempt(job, record, writer, remaining, renewer,
                                                 cancelled), run=record.run,
                             traceparent=span.traceparent)
            if result.status == "interrupted":
                result = await self._ledger.interrupt(job.job_id, self.owner, result)
                status = result.status
                assert result.interrupt is not None
                await writer.emit(ev.INTERRUPT, result.interrupt)
                self._metrics.job_interrupted(record.source)
                logger.info("job interrupted (%d): waiting for a decision on %s",
                            result.interrupt_n, ", ".join(
                                str(r.get("tool")) for r in result.interrupt["requests"]),
                            extra=log)
                return await self._unless_cancelled_meanwhile(result, cancelled)
            result = await self._ledger.finish(job.job_id, self.owner,
                                               await self._with_usage(job, result))
            status = result.status
            error_type = result.error.type if result.error is not None else None
            await writer.emit(ev.END, end_data(result))
            logger.info("job %s after %d attempt(s)", status, result.attempts, extra=log)
            return result
        finally:
            self._metrics.job_finished(record.source, status, time.monotonic() - clock,
                                       error_type)
            await writer.aclose()

    async def _unless_cancelled_meanwhile(self, paused: JobResult,
                                          cancelled: asyncio.Event) -> JobResult:
        """A cancel asked for while the run was pausing (noted against its lease) is
        not lost to the pause: the interrupted job is cancelled now (its lease free)."""
        if not cancelled.is_set():
            with contextlib.suppress(DependencyUnavailable):
                record = await self._ledger.get(paused.job_id)
                if record is None or record.cancel_reason is None:
                    return paused
        reason = await self._cancel_reason(paused.job_id)
        with contextlib.suppress(JobFinished):
            cancelled_record = await self._ledger.cancel(paused.job_id, reason,
                                                         keep_unknown=False)
            if cancelled_record.result is not None:
                logger.info("job cancelled as it paused: %s", reason,
                            extra={"job_id": paused.job_id, "trace_id": paused.trace_id})
                return cancelled_record.result
        return paused

    async def _attempt(self, job: Job, record: JobRecord, writer: EventWriter,
                       remaining: float, renewer: asyncio.Task[None],
                       cancelled: asyncio.Event) -> JobResult:
        started = record.started_at or datetime.now(UTC)
        stop = asyncio.ensure_future(cancelled.wait())
        run: asyncio.Future[AgentOutput | Interrupt] | None = None
        try:
            if remaining <= 0:
                raise TimeoutError
            run = asyncio.ensure_future(self._runtime.run(job, writer.emit, record.resume))
            done, _ = await asyncio.wait({run, renewer, stop}, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            if run not in done:
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run  # stops at its next await; its checkpoints are kept
                if renewer in done:
                    renewer.result()  # raises LeaseLost or the dependency error
                if stop in done:
                    duration_ms = int((datetime.now(UTC) - started).total_seconds() * 1000)
                    return JobResult.cancelled(job.job_id, job.trace_id, record.attempts,
                                               await self._cancel_reason(job.job_id),
                                               duration_ms)
                raise TimeoutError
            output = run.result()
            if isinstance(output, Interrupt):
                return JobResult.interrupted(job.job_id, job.trace_id, record.attempts,
                                             output.to_data())
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
        finally:
            stop.cancel()
            if run is not None and not run.done():  # this task was cancelled (shutdown):
                run.cancel()  # the agent must stop too, before the lease is given back
                with contextlib.suppress(BaseException):
                    await run
        duration_ms = int((datetime.now(UTC) - started).total_seconds() * 1000)
        return JobResult.failed(job.job_id, job.trace_id, record.attempts,
                                ErrorInfo.from_failure(failure), duration_ms)
