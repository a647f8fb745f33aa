"""`DeliveryHandler`: one intake message, decoded, decided and settled.

Decode: the message to a `Job` (`InvalidJob` otherwise). Decide: claim and run it
through `ExecuteJob`, whose result is published before the message is acked;
what did not end with a result goes through `settlement.settle`. Settle: ack,
nak with a delay, or term, after a rejection event or the use case's `give_up`.
In-progress acks keep the message from being redelivered while its job runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.codec import job_identity, read_nats_event, read_nats_job
from agent_executor.adapters.nats.delivery import Delivery
from agent_executor.adapters.nats.settlement import RetryPolicy, Settlement, settle
from agent_executor.domain.capacity import Slot
from agent_executor.domain.errors import (
    DependencyUnavailable,
    InvalidJob,
    InvalidRequest,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    WrongJobState,
)
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job, check_id

logger = logging.getLogger(__name__)

SOURCE = "nats"


class RejectionPublisher(Protocol):
    async def publish_rejection(self, event_id: str, error: InvalidJob,
                                job_id: str | None) -> None:
        """Raises `DependencyUnavailable` when the bus does not take it."""
        ...


class DeliveryHandler:
    def __init__(self, execute: ExecuteJob, names: EventNames, metrics: PrometheusMetrics,
                 rejections: RejectionPublisher, *, max_deliver: int,
                 progress_interval_seconds: float, retry: RetryPolicy | None = None,
                 max_event_bytes: int | None = None,
                 give_up_seconds: float = 60.0) -> None:
        self._execute = execute
        self._names = names
        self._metrics = metrics
        self._rejections = rejections
        self.max_deliver = max_deliver
        self.progress_interval = progress_interval_seconds
        self._retry = retry or RetryPolicy()
        self._max_event_bytes = max_event_bytes
        self._give_up_seconds = give_up_seconds

    async def handle(self, delivery: Delivery, slot: Slot | None = None) -> None:
        """Run the message's job in `slot` (given back in any case) and settle it."""
        self._metrics.nats_messages_received_total.inc()
        if delivery.num_delivered > 1:
            self._metrics.nats_redeliveries_total.inc()
        keepalive = asyncio.create_task(self._keep_in_progress(delivery))
        job: Job | None = None
        try:
            try:
                try:
                    job = self._read(delivery)
                except InvalidJob as unreadable:
                    if not await self._steer(delivery, unreadable):
                        raise
                    await self._settle(delivery, Settlement("ack"))
                    return
                record = await self._execute.claim(job, SOURCE)
                if record.settled is None:
                    taken, slot = slot, None  # run_claimed gives it back
                    await self._execute.run_claimed(job, record, taken)
                await self._settle(delivery, Settlement("ack"))
            except asyncio.CancelledError:  # stop() after the grace period
                with contextlib.suppress(BaseException):
                    await self._settle(delivery, Settlement("nak", outcome="shutdown"))
                raise
            except Exception as exc:
                await self._settle_error(delivery, exc, job)
        finally:
            if slot is not None:
                slot.release()
            keepalive.cancel()

    def _read(self, delivery: Delivery) -> Job:
        if self._max_event_bytes is not None and len(delivery.data) > self._max_event_bytes:
            raise InvalidJob(f"event larger than MAX_EVENT_BYTES ({self._max_event_bytes})",
                             [f"body: {len(delivery.data)} bytes"])
        return read_nats_job(delivery.headers, delivery.data, self._names)

    async def _steer(self, delivery: Delivery, unreadable: InvalidJob) -> bool:
        """A `{prefix}.cancel`, `.resume` or `.retry` event instead of a job: recorded
        (a cancel is kept for a job not seen yet), then True; False when the message is
        no steering event either. One that cannot apply (unknown job, wrong state,
        bad decisions) raises `InvalidJob`: it is rejected and terminated."""
        try:
            event = read_nats_event(delivery.headers, delivery.data)
        except InvalidJob:
            return False
        kind = event.get_type().removeprefix(f"{self._names.type_prefix}.")
        if kind not in ("cancel", "resume", "retry"):
            return False
        data = event.get_data()
        data = data if isinstance(data, dict) else {}
        job_id = data.get("job_id")
        problems = check_id("data.job_id", job_id)
        if problems:
            raise InvalidJob(f"invalid {kind} event: " + "; ".join(problems), problems)
        assert isinstance(job_id, str)
        try:
            if kind == "cancel":
                await self._cancel(job_id, data)
            elif kind == "resume":
                await self._execute.resume(job_id, data.get("interrupt_id"),
                                           data.get("decisions"))
            else:
                await self._execute.retry(job_id)
        except (JobNotFound, WrongJobState, InvalidRequest) as exc:
            details = getattr(exc, "details", None) or [str(exc)]
            raise InvalidJob(f"{kind} event for job {job_id} refused: {exc}", details) from exc
        return True

    async def _cancel(self, job_id: str, data: dict[str, object]) -> None:
        reason = data.get("reason", "cancelled on request")
        if not isinstance(reason, str) or len(reason) > 2000:
            problem = "data.reason: expected a string of at most 2000 characters"
            raise InvalidJob("invalid cancel event: " + problem, [problem])
        try:
            await self._execute.cancel(job_id, reason, keep_unknown=True)
        except JobFinished as exc:
            logger.info("cancel of a finished job ignored: %s", exc, extra={"job_id": job_id})

    async def _settle_error(self, delivery: Delivery, exc: Exception,
                            job: Job | None) -> None:
        delivered = delivery.num_delivered
        decision = settle(exc, delivered, self.max_deliver, self._retry)
        identity = (job.job_id, job.trace_id) if job else job_identity(delivery.headers,
                                                                      delivery.data)
        log = {"job_id": identity[0], "trace_id": identity[1]} if identity else {}
        self._metrics.nats_messages_failed_total.inc()
        if isinstance(exc, InvalidJob):
            logger.warning("NATS message on %s is not a valid job: %s", delivery.subject,
                           exc.message, extra=log)
            decision = await self._reject(delivery, exc, identity, decision)
        elif isinstance(exc, JobMismatch):
            logger.warning("NATS message refused: %s", exc, extra=log)
        elif isinstance(exc, JobConflict):
            logger.info("job is running elsewhere (delivery %d)", delivered, extra=log)
        elif isinstance(exc, DependencyUnavailable):
            logger.warning("job not finished, %s (delivery %d of %d): %s", decision.outcome,
                           delivered, self.max_deliver, exc, extra=log)
        else:
            logger.error("job handling failed, %s (delivery %d)", decision.outcome, delivered,
                         exc_info=exc, extra=log)
        if decision.give_up is not None and job is not None:
            decision = await self._give_up(job, decision)
        await self._settle(delivery, decision)

    async def _reject(self, delivery: Delivery, exc: InvalidJob,
                      identity: tuple[str, str] | None, decision: Settlement) -> Settlement:
        try:
            await self._rejections.publish_rejection(
                f"rejected:{delivery.message_id}", exc, identity[0] if identity else None)
        except DependencyUnavailable as publish_error:
            last = 0 < self.max_deliver <= delivery.num_delivered
            logger.error("could not publish the rejection (%s)%s", publish_error,
                         "" if last else "; the message is retried")
            if not last:
                return Settlement("nak", self._retry.delay(delivery.num_delivered),
                                  outcome="rejection not published")
        return decision

    async def _give_up(self, job: Job, decision: Settlement) -> Settlement:
        """The use case records the failure, then publishes it; while the ledger cannot
        record it (PostgreSQL flapping), try again for up to `give_up_seconds`. Nothing
        is published unrecorded: a job left in the ledger is resumed by a reaper."""
        assert decision.give_up is not None
        log = {"job_id": job.job_id, "trace_id": job.trace_id}
        deadline = time.monotonic() + self._give_up_seconds
        pause = 0.25
        while True:
            try:
                await self._execute.give_up(job, SOURCE, decision.give_up)
                return decision
            except JobConflict:
                return Settlement("ack", outcome="running elsewhere; it ends on its own")
            except DependencyUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    logger.error("could not record giving up on the job (%s); no result is "
                                 "published, and a reaper resumes it once the ledger is back",
                                 exc, extra=log)
                    return Settlement("term", outcome="gave up, nothing recorded")
                logger.warning("recording the give-up failed (%s); retrying", exc, extra=log)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _settle(self, delivery: Delivery, decision: Settlement) -> None:
        try:
            if decision.action == "ack":
                await delivery.ack()
            elif decision.action == "nak":
                await delivery.nak(decision.delay)
            else:
                await delivery.term()
        except DependencyUnavailable as exc:  # the server redelivers after ack_wait
            logger.warning("could not %s a NATS message: %s", decision.action, exc)
            return
        self._metrics.nats_messages_processed_total.labels(outcome=decision.action).inc()

    async def _keep_in_progress(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            try:
                await delivery.in_progress()
            except DependencyUnavailable as exc:
                logger.debug("in-progress ack failed: %s", exc)
