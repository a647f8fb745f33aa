"""`PostgresJobLedger`: the job ledger in the `job_ledger` table (migrations/0001).

Every state change is one statement whose WHERE clause is the rule it enforces
(row locks make it atomic); times come from the database clock, so replicas
with skewed clocks agree on when a lease expires.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.ledger_refusals import not_resumable, not_retryable, tombstone
from agent_executor.adapters.postgres.job_list import page_sql
from agent_executor.adapters.postgres.pool import DRIVER_ERRORS, create_pool, quote_ident
from agent_executor.domain.errors import (
    DependencyUnavailable,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    LeaseLost,
)
from agent_executor.domain.fingerprint import fingerprint, mismatch_message
from agent_executor.domain.interrupts import Resume
from agent_executor.domain.job import Job
from agent_executor.domain.listing import JobPage, JobQuery, encode_cursor
from agent_executor.domain.result import JobRecord, JobResult

_COLUMNS = ("job_id, trace_id, status, attempts, source, created_at, updated_at, "
            "started_at, result, fingerprint, run, cancel_reason, resume, "
            "run_attempts_before")
# A row recorded before fingerprints (NULL) matches every delivery.
_SAME_JOB = "(l.fingerprint IS NULL OR l.fingerprint = excluded.fingerprint)"
_LEASE_FREE = "(l.lease_expires_at IS NULL OR l.lease_expires_at <= now())"
# A job that may run: unfinished and not waiting for a human decision (interrupted).
_RUNNABLE = "(l.finished_at IS NULL AND l.status <> 'interrupted')"
# The event id of a `cancelled` result of the row's run (CONTRACT section 6).
_CANCELLED_EVENT = ("l.job_id || ':cancelled' || CASE WHEN l.run > 1 THEN ':' || l.run "
                    "ELSE '' END")
# The number the interrupt `$3` gets: the last one's again when it is the same pause.
_INTERRUPT_N = ("CASE WHEN l.last_interrupt_id = $3 THEN l.interrupts "
                "ELSE l.interrupts + 1 END")
# A job cancelled before it arrived: nothing recorded to run (see `tombstone`).
_TOMBSTONE = "(l.job -> 'agent_definition' = '{}'::jsonb)"


class PostgresJobLedger:
    """The `JobLedger` port on PostgreSQL (asyncpg, its own small pool)."""

    def __init__(self, pool: Any, schema: str = "public", *, owns_pool: bool = False) -> None:
        self._pool = pool
        self._owns_pool = owns_pool
        self.schema = schema
        table = f"{quote_ident(schema)}.job_ledger"
        self._claim_sql = f"""
            INSERT INTO {table} AS l (job_id, trace_id, source, status, attempts, job,
                                      lease_owner, lease_expires_at, started_at, fingerprint)
            VALUES ($1, $2, $3, 'running', 1, $4, $5, now() + make_interval(secs => $6), now(),
                    $7)
            ON CONFLICT (job_id) DO UPDATE
               SET status = 'running', attempts = l.attempts + 1,
                   lease_owner = excluded.lease_owner,
                   lease_expires_at = excluded.lease_expires_at,
                   started_at = coalesce(l.started_at, now()), updated_at = now()
             WHERE {_RUNNABLE} AND {_LEASE_FREE} AND {_SAME_JOB}
            RETURNING {_COLUMNS}"""
        self._get_sql = f"SELECT {_COLUMNS} FROM {table} WHERE job_id = $1"
        self._renew_sql = f"""
            UPDATE {table} SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE job_id = $1 AND lease_owner = $2 AND finished_at IS NULL
            RETURNING coalesce(cancel_reason, '') AS reason,
                      cancel_requested_at IS NOT NULL AS cancelled"""
        # pending or interrupted (lease free or expired): finished now, a new outcome
        # to publish; running: noted for its runner
        self._cancel_sql = f"""
            UPDATE {table} AS l
               SET status = CASE WHEN {_LEASE_FREE} THEN 'cancelled' ELSE l.status END,
                   result = CASE WHEN {_LEASE_FREE} THEN jsonb_build_object(
                       'job_id', l.job_id, 'trace_id', l.trace_id, 'status', 'cancelled',
                       'reason', $2::text, 'attempts', l.attempts, 'run', l.run,
                       'finished_at', to_jsonb(now())) ELSE l.result END,
                   event_id = CASE WHEN {_LEASE_FREE} THEN {_CANCELLED_EVENT}
                                   ELSE l.event_id END,
                   published_at = CASE WHEN {_LEASE_FREE} THEN NULL ELSE l.published_at END,
                   resume = CASE WHEN {_LEASE_FREE} THEN NULL ELSE l.resume END,
                   finished_at = CASE WHEN {_LEASE_FREE} THEN now() ELSE NULL END,
                   lease_owner = CASE WHEN {_LEASE_FREE} THEN NULL ELSE l.lease_owner END,
                   lease_expires_at = CASE WHEN {_LEASE_FREE} THEN NULL
                                           ELSE l.lease_expires_at END,
                   cancel_requested_at = now(), cancel_reason = $2, updated_at = now()
             WHERE l.job_id = $1 AND l.finished_at IS NULL
            RETURNING {_COLUMNS}"""
        self._cancel_unknown_sql = f"""
            INSERT INTO {table} AS l (job_id, trace_id, source, status, attempts, job, result,
                                      event_id, finished_at, cancel_requested_at,
                                      cancel_reason)
            VALUES ($1, '', 'nats', 'cancelled', 0, $3, $4, $5, now(), now(), $2)
            ON CONFLICT (job_id) DO NOTHING
            RETURNING {_COLUMNS}"""
        self._finish_sql = f"""
            UPDATE {table}
               SET status = $3, result = $4, event_id = $5, finished_at = now(),
                   published_at = NULL, resume = NULL, lease_owner = NULL,
                   lease_expires_at = NULL, updated_at = now()
             WHERE job_id = $1 AND lease_owner = $2 AND finished_at IS NULL
            RETURNING result"""
        # the lease's holder pauses the run: numbered, published anew, lease freed
        self._interrupt_sql = f"""
            UPDATE {table} AS l
               SET status = 'interrupted',
                   result = $4::jsonb || jsonb_build_object('interrupt_n', {_INTERRUPT_N}),
                   event_id = l.job_id || ':interrupted:' || ({_INTERRUPT_N}),
                   interrupts = {_INTERRUPT_N}, last_interrupt_id = $3,
                   interrupted_at = now(), published_at = NULL, resume = NULL,
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE l.job_id = $1 AND l.lease_owner = $2 AND l.finished_at IS NULL
            RETURNING result"""
        # the pending interrupt's decisions: runnable again by anyone, its wait not
        # counted as running time
        self._resume_sql = f"""
            UPDATE {table} AS l
               SET status = 'pending', resume = $3, result = NULL, event_id = NULL,
                   published_at = NULL,
                   started_at = l.started_at + (now() - coalesce(l.interrupted_at, now())),
                   interrupted_at = NULL, updated_at = now()
             WHERE l.job_id = $1 AND l.status = 'interrupted' AND l.last_interrupt_id = $2
            RETURNING {_COLUMNS}"""
        # the next run of a failed or cancelled job: attempts count on, per run anew;
        # its pauses are new ones even where the last run's was (numbered on)
        self._retry_sql = f"""
            UPDATE {table} AS l
               SET status = 'pending', run = l.run + 1, result = NULL, event_id = NULL,
                   finished_at = NULL, published_at = NULL, started_at = NULL,
                   interrupted_at = NULL, resume = NULL, last_interrupt_id = NULL,
                   cancel_requested_at = NULL, cancel_reason = NULL,
                   run_attempts_before = l.attempts,
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE l.job_id = $1 AND l.status IN ('failed', 'cancelled')
               AND NOT {_TOMBSTONE}
            RETURNING {_COLUMNS}"""
        self._state_sql = f"""
            SELECT l.status, l.last_interrupt_id, {_TOMBSTONE} AS tombstone
              FROM {table} AS l WHERE l.job_id = $1"""
        self._abandon_sql = f"""
            INSERT INTO {table} AS l (job_id, trace_id, source, status, attempts, job,
                                      result, event_id, finished_at, fingerprint)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $9, now(), $8)
            ON CONFLICT (job_id) DO UPDATE
               SET status = excluded.status, result = excluded.result,
                   event_id = excluded.event_id, finished_at = now(), published_at = NULL,
                   resume = NULL, lease_owner = NULL, lease_expires_at = NULL,
                   updated_at = now()
             WHERE {_RUNNABLE} AND {_LEASE_FREE} AND {_SAME_JOB}
            RETURNING result"""
        # only the outcome that went out: an older one's event never hides a newer one
        self._published_sql = f"""
            UPDATE {table} SET published_at = now()
             WHERE job_id = $1 AND event_id = $2 AND result IS NOT NULL
               AND published_at IS NULL"""
        # along job_ledger_unpublished_idx (migrations/0006)
        self._unpublished_sql = f"""
            SELECT result FROM {table}
             WHERE result IS NOT NULL AND published_at IS NULL
               AND coalesce(finished_at, interrupted_at) <= now() - make_interval(secs => $1)
             ORDER BY coalesce(finished_at, interrupted_at) LIMIT $2"""
        self._release_sql = f"""
            UPDATE {table}
               SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                   updated_at = now()
             WHERE job_id = $1 AND lease_owner = $2 AND finished_at IS NULL"""
        # SKIP LOCKED: concurrent reapers each take a different orphan, none waits.
        self._orphan_sql = f"""
            UPDATE {table} AS l
               SET status = 'running', attempts = l.attempts + 1, lease_owner = $2,
                   lease_expires_at = now() + make_interval(secs => $3),
                   started_at = coalesce(l.started_at, now()), updated_at = now()
             WHERE l.job_id = (
                     SELECT o.job_id FROM {table} AS o
                      WHERE o.finished_at IS NULL AND o.status <> 'interrupted'
                        AND o.source = ANY($1::text[])
                        AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= now())
                      ORDER BY o.lease_expires_at NULLS FIRST
                      LIMIT 1
                        FOR UPDATE SKIP LOCKED)
               AND {_RUNNABLE} AND {_LEASE_FREE}
            RETURNING {_COLUMNS}, l.job"""

    @classmethod
    async def create(cls, settings: PostgresSettings, *, max_size: int = 4) -> PostgresJobLedger:
        """A ledger with its own pool (connected lazily), closed by `aclose`."""
        try:
            pool = await create_pool(settings, max_size=max_size)
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc) from exc
        return cls(pool, settings.schema, owns_pool=True)

    @property
    def pool(self) -> Any:
        """The asyncpg pool (shared with the readiness probe)."""
        return self._pool

    async def aclose(self) -> None:
        if self._owns_pool:
            await self._pool.close()

    async def claim(self, job: Job, source: str, owner: str, lease_seconds: float) -> JobRecord:
        async with self._connection() as conn:
            # A row that vanished between the two statements was pruned: claim again.
            print_ = fingerprint(job)
            for _ in range(3):
                row = await conn.fetchrow(self._claim_sql, job.job_id, job.trace_id, source,
                                          job.to_data(), owner, float(lease_seconds), print_)
                if row is not None:
                    return _record(row)
                row = await conn.fetchrow(self._get_sql, job.job_id)
                if row is not None:
                    _same_job(row, job, print_)
                    record = _record(row)
                    if record.settled is not None:  # finished, or waiting for a decision
                        return record
                    raise JobConflict(f"job {job.job_id} is running under another lease")
        raise JobConflict(f"job {job.job_id} could not be claimed; try again")

    async def renew(self, job_id: str, owner: str, lease_seconds: float) -> str | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._renew_sql, job_id, owner, float(lease_seconds))
        if row is None:
            raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
        return str(row["reason"]) if row["cancelled"] else None

    async def cancel(self, job_id: str, reason: str, *, keep_unknown: bool) -> JobRecord:
        async with self._connection() as conn:
            for _ in range(3):
                row = await conn.fetchrow(self._cancel_sql, job_id, reason)
                if row is not None:
                    return _record(row)
                known = await conn.fetchrow(self._get_sql, job_id)
                if known is not None:
                    raise JobFinished(f"job {job_id} already {known['status']}")
                if not keep_unknown:
                    raise JobNotFound(f"no job with id {job_id!r}")
                cancelled = JobResult.cancelled(job_id, "", 0, reason)
                row = await conn.fetchrow(self._cancel_unknown_sql, job_id, reason,
                                          tombstone(job_id), cancelled.to_record(),
                                          cancelled.event_id)
                if row is not None:
                    return _record(row)
        raise JobConflict(f"job {job_id} changed while being cancelled; try again")

    async def finish(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        async with self._connection() as conn:
            stored = await conn.fetchval(self._finish_sql, job_id, owner, result.status,
                                         result.to_record(), result.event_id)
            if stored is None:
                row = await conn.fetchrow(self._get_sql, job_id)
                if row is None or not _record(row).finished:
                    raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
                stored = row["result"]
        return JobResult.from_record(stored)

    async def interrupt(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        assert result.interrupt is not None, "an interrupted result holds its interrupt"
        async with self._connection() as conn:
            stored = await conn.fetchval(self._interrupt_sql, job_id, owner,
                                         str(result.interrupt["interrupt_id"]),
                                         result.to_record())
        if stored is None:
            raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
        return JobResult.from_record(stored)

    async def resume(self, job_id: str, resume: Resume) -> JobRecord:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._resume_sql, job_id, resume.interrupt_id,
                                      resume.to_data())
            if row is not None:
                return _record(row)
            state = await conn.fetchrow(self._state_sql, job_id)
        raise not_resumable(job_id, resume.interrupt_id,
                            None if state is None else state["status"],
                            None if state is None else state["last_interrupt_id"])

    async def retry(self, job_id: str) -> JobRecord:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._retry_sql, job_id)
            if row is not None:
                return _record(row)
            state = await conn.fetchrow(self._state_sql, job_id)
        raise not_retryable(job_id, None if state is None else state["status"],
                            state is not None and state["tombstone"])

    async def abandon(self, job: Job, source: str, result: JobResult) -> JobResult:
        async with self._connection() as conn:
            print_ = fingerprint(job)
            stored = await conn.fetchval(self._abandon_sql, job.job_id, job.trace_id, source,
                                         result.status, result.attempts, job.to_data(),
                                         result.to_record(), print_, result.event_id)
            if stored is None:
                row = await conn.fetchrow(self._get_sql, job.job_id)
                if row is not None:
                    _same_job(row, job, print_)
                if row is None or row["result"] is None:
                    raise JobConflict(f"job {job.job_id} is running under another lease")
                stored = row["result"]
        return JobResult.from_record(stored)

    async def mark_published(self, job_id: str, event_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute(self._published_sql, job_id, event_id)

    async def unpublished(self, older_than_seconds: float, limit: int) -> list[JobResult]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._unpublished_sql, float(older_than_seconds), limit)
        return [JobResult.from_record(row["result"]) for row in rows]

    async def release(self, job_id: str, owner: str) -> None:
        async with self._connection() as conn:
            await conn.execute(self._release_sql, job_id, owner)

    async def claim_orphan(self, sources: frozenset[str], owner: str,
                           lease_seconds: float) -> tuple[Job, JobRecord] | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._orphan_sql, sorted(sources), owner,
                                      float(lease_seconds))
        if row is None:
            return None
        return _job(row["job"]), _record(row)

    async def get(self, job_id: str) -> JobRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(self._get_sql, job_id)
        return None if row is None else _record(row)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        sql, args = page_sql(f"{quote_ident(self.schema)}.job_ledger", _COLUMNS, query)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        records = [_record(row) for row in rows[:query.limit]]
        last = records[-1] if len(rows) > query.limit else None
        return JobPage(records, None if last is None else
                       encode_cursor(last.created_at.isoformat(), last.job_id))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; the one place driver errors become domain errors."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"job ledger (PostgreSQL) unavailable: {type(exc).__name__}: {exc}".rstrip(": "))


def _same_job(row: Mapping[str, Any], job: Job, print_: str) -> None:
    if row["fingerprint"] is not None and row["fingerprint"] != print_:
        raise JobMismatch(mismatch_message(job.job_id))


def _record(row: Mapping[str, Any]) -> JobRecord:
    result = row["result"]
    return JobRecord(job_id=row["job_id"], trace_id=row["trace_id"], status=row["status"],
                     attempts=row["attempts"], source=row["source"],
                     created_at=row["created_at"], updated_at=row["updated_at"],
                     started_at=row["started_at"], run=row["run"],
                     cancel_reason=row["cancel_reason"],
                     result=None if result is None else JobResult.from_record(result),
                     resume=None if row["resume"] is None else Resume.from_data(row["resume"]),
                     run_attempts=row["attempts"] - row["run_attempts_before"])


def _job(data: Mapping[str, Any]) -> Job:
    return Job.from_data(data)

