"""Jobs that run after their request was answered (`202` jobs, orphans taken over), and
results recorded but never published (the outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent_executor.domain.capacity import Slot
from agent_executor.domain.errors import AgentExecutorError
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job
from agent_executor.domain.result import JobRecord
from agent_executor.ports.ledger import JobLedger

logger = logging.getLogger(__name__)

# HTTP jobs have no redelivery: their lease is their only safety net. NATS jobs are
# redelivered, but only `max_deliver` times: when every delivery lands on a worker
# that dies, the message is gone and only the ledger still knows the job. Taking
# both over is safe: the lease lets one worker at a time run a job, and a finished
# job's later deliveries just publish its recorded result again.
ORPHAN_SOURCES = frozenset({"http", "nats"})


class BackgroundJobs:
    """Runs claimed jobs as tasks and takes over orphans whose worker died.

    A job accepted with `202` keeps its lease while it runs here. If the process
    dies, the lease expires and `reap_once` in any live process claims it and
    resumes it from its checkpoint.
    """

    def __init__(self, execute: ExecuteJob, ledger: JobLedger, *,
                 reap_interval_seconds: float | None = None,
                 publish_after_seconds: float | None = None) -> None:
        self._execute = execute
        self._ledger = ledger
        self._interval = reap_interval_seconds or execute.lease_seconds / 2
        # The process that records a result publishes it at once; one left unpublished
        # this long was left by a process that died (or a bus that was down).
        self._publish_after = publish_after_seconds if publish_after_seconds is not None \
            else execute.lease_seconds / 2
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def start(self, job: Job, record: JobRecord, slot: Slot | None = None) -> None:
        task = asyncio.create_task(self._run(job, record, slot), name=f"job:{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job, record: JobRecord, slot: Slot | None) -> None:
        log = {"job_id": job.job_id, "trace_id": job.trace_id}
        try:
            await self._execute.run_claimed(job, record, slot)
        except AgentExecutorError as exc:
            logger.warning("background job left unfinished (%s: %s); it will be resumed "
                           "when its lease expires", type(exc).__name__, exc, extra=log)
        except Exception:
            logger.exception("background job crashed; it will be resumed", extra=log)

    async def reap_once(self) -> int:
        """Deliver results recorded but never published, then claim orphans while
        there are free slots; returns how many orphans were taken."""
        await self._execute.outbox.flush(self._publish_after)
        taken = 0
        while (slot := self._execute.capacity.reserve()) is not None:
            try:
                orphan = await self._ledger.claim_orphan(
                    ORPHAN_SOURCES, self._execute.owner, self._execute.lease_seconds)
            except BaseException:
                slot.release()
                raise
            if orphan is None:
                slot.release()
                break
            job, record = orphan
            logger.info("taking over orphaned job (attempt %d)", record.attempts,
                        extra={"job_id": job.job_id, "trace_id": job.trace_id})
            self.start(job, record, slot)
            taken += 1
        return taken

    async def reap_forever(self) -> None:
        """Reap every interval, and at once when a job was resumed or retried here;
        meanwhile stop the jobs other replicas cancel."""
        listener = asyncio.create_task(self._execute.listen_for_cancels(),
                                       name="cancel-listener")
        try:
            while True:
                self._execute.woken.clear()
                try:
                    await self.reap_once()
                except AgentExecutorError as exc:
                    logger.warning("orphan reaper: %s", exc)
                # a job resumed or retried here is claimed at once, not a tick later
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._execute.woken.wait()
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener

    async def drain(self, grace_seconds: float) -> None:
        """Let running jobs finish for up to `grace_seconds`, then cancel the rest
        (their leases are given back so another process resumes them at once)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
