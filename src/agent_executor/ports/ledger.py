from __future__ import annotations

from typing import Protocol

from agent_executor.domain.interrupts import Resume
from agent_executor.domain.job import Job
from agent_executor.domain.listing import JobPage, JobQuery
from agent_executor.domain.result import JobRecord, JobResult


class JobLedger(Protocol):
    """One row per job; leases make every job run once and end with one result.

    A lease is held by an `owner` (one per process) until it expires; the owner
    renews it while the job runs. Every method raises `DependencyUnavailable`
    when the store cannot be reached.
    """

    async def claim(self, job: Job, source: str, owner: str, lease_seconds: float) -> JobRecord:
        """Take the job's lease, atomically with respect to every other claim.

        - unknown job: recorded (with its JobExecutionEvent) as `running`, attempts 1;
        - finished job: returned unchanged (`record.result` set), no lease taken;
        - interrupted job: returned unchanged (`record.result` holds its pending
          interrupt, see `JobRecord.settled`), no lease taken: it waits for `resume`;
        - unfinished job whose lease is free or expired (pending, including one
          resumed or retried): lease taken, attempts + 1, `running`, `started_at`
          kept from the run's first attempt; `record.resume` carries the decisions a
          `resume` recorded, `record.run_attempts` the attempts of this run;
        - unfinished job under a live lease (whoever holds it): raises `JobConflict`;
        - a known job_id with another fingerprint (definition, input): raises
          `JobMismatch`, whatever its state.
        `record.cancel_reason` is set when a cancel was asked for (see `cancel`).
        """
        ...

    async def renew(self, job_id: str, owner: str, lease_seconds: float) -> str | None:
        """Extend the lease; raises `LeaseLost` if `owner` no longer holds it. Returns
        the reason of a cancel asked for meanwhile (`cancel`), else None."""
        ...

    async def cancel(self, job_id: str, reason: str, *, keep_unknown: bool) -> JobRecord:
        """Ask for the job to end `cancelled`; returns its record after the request.

        - unfinished job whose lease is free or expired (pending or interrupted):
          finished at once with a `cancelled` result of its run (`record.result` set,
          not yet published): it never starts (again);
        - unfinished job under a live lease: the request is noted (`cancel_reason`);
          its runner sees it at its next renewal (or sooner, by a broadcast) and
          records the `cancelled` result itself;
        - finished job: raises `JobFinished`;
        - unknown job: raises `JobNotFound`, or with `keep_unknown` records the job as
          `cancelled` already, so that when it arrives it ends so without running.
        """
        ...

    async def finish(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        """Record the result and free the lease; returns what is recorded.

        If the job is already finished the recorded result is returned instead.
        Raises `LeaseLost` if another owner holds the lease.
        """
        ...

    async def interrupt(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        """Record that the run paused (`result.status == "interrupted"`, its
        `interrupt` the pending one) and free the lease: the job is `interrupted`, not
        claimable, until `resume` (or `cancel`). Returns what is recorded, numbered:
        `interrupt_n` is one more than the job's previous interrupt, or the same
        number when the job's last interrupt had this `interrupt_id` (the same pause
        recorded again after a crash). Clears the applied `resume`. Raises `LeaseLost`
        if `owner` does not hold the lease."""
        ...

    async def resume(self, job_id: str, resume: Resume) -> JobRecord:
        """Record the decisions for the job's pending interrupt; returns its record.

        - interrupted job whose pending interrupt is `resume.interrupt_id`: `pending`
          with `record.resume` set, its interrupt cleared from `result` (the lease is
          free: any replica may claim it, `claim_orphan` included); `started_at` moves
          on by the time it waited, so JOB_TIMEOUT_SECONDS counts running time only;
        - any other state, or another interrupt id: raises `WrongJobState` (saying
          the status, or the pending interrupt's id);
        - unknown job: raises `JobNotFound`.
        """
        ...

    async def retry(self, job_id: str) -> JobRecord:
        """Start the next run of a `failed` or `cancelled` job; returns its record.

        `pending`, `run` + 1, no result, not published, no cancel request, no resume,
        `started_at` cleared (the run's timeout starts afresh); `attempts` count on,
        and `record.run_attempts` is 0 (MAX_JOB_ATTEMPTS counts per run). Raises
        `JobNotFound` for an unknown job and `WrongJobState` for one in any other
        state, or for a job cancelled before it arrived (nothing recorded to run).
        """
        ...

    async def abandon(self, job: Job, source: str, result: JobResult) -> JobResult:
        """Give up on a job that no worker is running: record `result` (a `failed` one)
        without holding a lease. Returns what is recorded.

        - unknown job: recorded (with its JobExecutionEvent) as finished with `result`;
        - finished job: its recorded result, unchanged;
        - interrupted job: its pending interrupt, unchanged;
        - unfinished job whose lease is free or expired: finished with `result`;
        - unfinished job under a live lease: raises `JobConflict` (it ends on its own).
        """
        ...

    async def mark_published(self, job_id: str, event_id: str) -> None:
        """Note that the recorded outcome whose event id is `event_id` (a result and its
        stream's `end`, or an interrupt) went out; a no-op if the job holds another
        outcome by now."""
        ...

    async def unpublished(self, older_than_seconds: float, limit: int) -> list[JobResult]:
        """Outcomes (results and pending interrupts) recorded at least
        `older_than_seconds` ago and not marked published (the outbox: a process died
        between recording and publishing), oldest first."""
        ...

    async def release(self, job_id: str, owner: str) -> None:
        """Give the lease up now (the job stays unfinished, claimable at once)."""
        ...

    async def claim_orphan(self, sources: frozenset[str], owner: str,
                           lease_seconds: float) -> tuple[Job, JobRecord] | None:
        """Take over one unfinished, not interrupted job from `sources` whose lease is
        free or expired (a crashed worker's, or a job resumed or retried and not yet
        claimed), as `claim` would.

        Safe when several processes call it at once: each orphan goes to one.
        """
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None."""
        ...

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Jobs newest first by `(created_at, job_id)` (ties broken by job_id, compared
        by code point), filtered by `query.statuses` and `query.sources` (empty: any),
        at most `query.limit` of them, after `query.cursor`.

        Keyset pages: paging with `next_cursor` until it is None returns every job
        that existed throughout, each exactly once, whatever is added meanwhile (new
        jobs sort before the cursor). The records' results may omit the agent's
        output (the list shows no result bodies). A cursor this ledger did not
        write raises `InvalidRequest`.
        """
        ...
