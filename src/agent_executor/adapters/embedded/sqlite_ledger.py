"""`SqliteJobLedger`: the job ledger in a SQLite file, for the `local` profile
when no Postgres is configured. Same semantics as `PostgresJobLedger`: every
state change is one statement (upsert or update with RETURNING) whose WHERE
clause is the rule, so it is atomic even with several processes on one file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from agent_executor.adapters.embedded.sqlite_schema import job_record, prepare
from agent_executor.adapters.ledger_refusals import not_resumable, not_retryable, tombstone
from agent_executor.domain.errors import (
    DependencyUnavailable,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    LeaseLost,
)
from agent_executor.domain.fingerprint import fingerprint, mismatch_message
from agent_executor.domain.health import ProbeResult
from agent_executor.domain.interrupts import Resume
from agent_executor.domain.job import Job
from agent_executor.domain.listing import JobPage, JobQuery, encode_cursor, number_cursor
from agent_executor.domain.result import JobRecord, JobResult

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
_COLUMNS = ("job_id, trace_id, status, attempts, source, created_at, updated_at, "
            "started_at, result, fingerprint, run, cancel_reason, resume, "
            "run_attempts_before")
# A row recorded before fingerprints (NULL) matches every delivery.
_SAME_JOB = "(fingerprint IS NULL OR fingerprint = excluded.fingerprint)"
_LEASE_FREE = "(lease_expires_at IS NULL OR lease_expires_at <= :now)"
# A job that may run: unfinished and not waiting for a human decision (interrupted).
_RUNNABLE = "(finished_at IS NULL AND status <> 'interrupted')"
# The event id of a `cancelled` result of the row's run (CONTRACT section 6).
_CANCELLED_EVENT = "job_id || ':cancelled' || CASE WHEN run > 1 THEN ':' || run ELSE '' END"
# The number the interrupt gets: the last one's again when it is the same pause.
_INTERRUPT_N = ("CASE WHEN last_interrupt_id = :interrupt_id THEN interrupts "
                "ELSE interrupts + 1 END")
# A job cancelled before it arrived: nothing recorded to run (see `tombstone`).
_TOMBSTONE = "(json_extract(job, '$.agent_definition') = '{}')"

_CLAIM = f"""
INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, lease_owner,
                        lease_expires_at, created_at, started_at, updated_at, fingerprint)
VALUES (:job_id, :trace_id, :source, 'running', 1, :job, :owner, :now + :lease,
        :now, :now, :now, :fingerprint)
ON CONFLICT (job_id) DO UPDATE
   SET status = 'running', attempts = attempts + 1, lease_owner = excluded.lease_owner,
       lease_expires_at = excluded.lease_expires_at,
       started_at = coalesce(started_at, excluded.started_at), updated_at = :now
 WHERE {_RUNNABLE} AND {_LEASE_FREE} AND {_SAME_JOB}
RETURNING {_COLUMNS}"""
_GET = f"SELECT {_COLUMNS} FROM job_ledger WHERE job_id = :job_id"
_RENEW = """
UPDATE job_ledger SET lease_expires_at = :now + :lease
 WHERE job_id = :job_id AND lease_owner = :owner AND finished_at IS NULL
RETURNING coalesce(cancel_reason, '') AS reason, cancel_requested_at IS NOT NULL AS cancelled"""
# pending or interrupted (lease free or expired): finished now, a new outcome to
# publish; running: noted for its runner
_CANCEL = f"""
UPDATE job_ledger
   SET status = CASE WHEN {_LEASE_FREE} THEN 'cancelled' ELSE status END,
       result = CASE WHEN {_LEASE_FREE} THEN json_object(
           'job_id', job_id, 'trace_id', trace_id, 'status', 'cancelled', 'reason', :reason,
           'attempts', attempts, 'run', run,
           'finished_at', strftime('%Y-%m-%dT%H:%M:%f', :now, 'unixepoch') || '+00:00')
           ELSE result END,
       event_id = CASE WHEN {_LEASE_FREE} THEN {_CANCELLED_EVENT} ELSE event_id END,
       published_at = CASE WHEN {_LEASE_FREE} THEN NULL ELSE published_at END,
       resume = CASE WHEN {_LEASE_FREE} THEN NULL ELSE resume END,
       finished_at = CASE WHEN {_LEASE_FREE} THEN :now ELSE NULL END,
       lease_owner = CASE WHEN {_LEASE_FREE} THEN NULL ELSE lease_owner END,
       lease_expires_at = CASE WHEN {_LEASE_FREE} THEN NULL ELSE lease_expires_at END,
       cancel_requested_at = :now, cancel_reason = :reason, updated_at = :now
 WHERE job_id = :job_id AND finished_at IS NULL
RETURNING {_COLUMNS}"""
_CANCEL_UNKNOWN = f"""
INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, result, event_id,
                        created_at, finished_at, updated_at, cancel_requested_at,
                        cancel_reason)
VALUES (:job_id, '', 'nats', 'cancelled', 0, :job, :result, :event_id, :now, :now, :now, :now,
        :reason)
ON CONFLICT (job_id) DO NOTHING
RETURNING {_COLUMNS}"""
_FINISH = """
UPDATE job_ledger
   SET status = :status, result = :result, event_id = :event_id, finished_at = :now,
       published_at = NULL, resume = NULL, lease_owner = NULL, lease_expires_at = NULL,
       updated_at = :now
 WHERE job_id = :job_id AND lease_owner = :owner AND finished_at IS NULL
RETURNING result"""
# the lease's holder pauses the run: numbered, published anew, lease freed
_INTERRUPT = f"""
UPDATE job_ledger
   SET status = 'interrupted',
       result = json_set(:result, '$.interrupt_n', {_INTERRUPT_N}),
       event_id = job_id || ':interrupted:' || ({_INTERRUPT_N}),
       interrupts = {_INTERRUPT_N}, last_interrupt_id = :interrupt_id,
       interrupted_at = :now, published_at = NULL, resume = NULL, lease_owner = NULL,
       lease_expires_at = NULL, updated_at = :now
 WHERE job_id = :job_id AND lease_owner = :owner AND finished_at IS NULL
RETURNING result"""
# the pending interrupt's decisions: runnable again by anyone, its wait not counted
# as running time
_RESUME = f"""
UPDATE job_ledger
   SET status = 'pending', resume = :resume, result = NULL, event_id = NULL,
       published_at = NULL, started_at = started_at + (:now - coalesce(interrupted_at, :now)),
       interrupted_at = NULL, updated_at = :now
 WHERE job_id = :job_id AND status = 'interrupted' AND last_interrupt_id = :interrupt_id
RETURNING {_COLUMNS}"""
# the next run of a failed or cancelled job: attempts count on, per run anew; its
# pauses are new ones even where the last run's was (numbered on)
_RETRY = f"""
UPDATE job_ledger
   SET status = 'pending', run = run + 1, result = NULL, event_id = NULL, finished_at = NULL,
       published_at = NULL, started_at = NULL, interrupted_at = NULL, resume = NULL,
       last_interrupt_id = NULL, cancel_requested_at = NULL, cancel_reason = NULL,
       run_attempts_before = attempts,
       lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
 WHERE job_id = :job_id AND status IN ('failed', 'cancelled') AND NOT {_TOMBSTONE}
RETURNING {_COLUMNS}"""
_STATE = f"""
SELECT status, last_interrupt_id, {_TOMBSTONE} AS tombstone FROM job_ledger
 WHERE job_id = :job_id"""
_ABANDON = f"""
INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, result, event_id,
                        created_at, finished_at, updated_at, fingerprint)
VALUES (:job_id, :trace_id, :source, :status, :attempts, :job, :result, :event_id, :now,
        :now, :now, :fingerprint)
ON CONFLICT (job_id) DO UPDATE
   SET status = excluded.status, result = excluded.result, event_id = :event_id,
       finished_at = :now, published_at = NULL, resume = NULL, lease_owner = NULL,
       lease_expires_at = NULL, updated_at = :now
 WHERE {_RUNNABLE} AND {_LEASE_FREE} AND {_SAME_JOB}
RETURNING result"""
# only the outcome that went out: an older one's event never hides a newer one
_PUBLISHED = """
UPDATE job_ledger SET published_at = :now
 WHERE job_id = :job_id AND event_id = :event_id AND result IS NOT NULL
   AND published_at IS NULL"""
_UNPUBLISHED = """
SELECT result FROM job_ledger
 WHERE result IS NOT NULL AND published_at IS NULL
   AND coalesce(finished_at, interrupted_at) <= :now - :age
 ORDER BY coalesce(finished_at, interrupted_at) LIMIT :limit"""
_RELEASE = """
UPDATE job_ledger
   SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
 WHERE job_id = :job_id AND lease_owner = :owner AND finished_at IS NULL"""
_ORPHAN = f"""
UPDATE job_ledger
   SET status = 'running', attempts = attempts + 1, lease_owner = :owner,
       lease_expires_at = :now + :lease, started_at = coalesce(started_at, :now),
       updated_at = :now
 WHERE job_id = (SELECT job_id FROM job_ledger
                  WHERE {_RUNNABLE} AND {_LEASE_FREE}
                    AND source IN (SELECT value FROM json_each(:sources))
                  ORDER BY lease_expires_at LIMIT 1)
   AND {_RUNNABLE} AND {_LEASE_FREE}
RETURNING {_COLUMNS}, job"""

# GET /jobs: keyset pages; the list shows no result bodies, so the agent's output stays.
_LIST_COLUMNS = ", ".join("json_remove(result, '$.result') AS result" if c == "result" else c
                          for c in _COLUMNS.split(", "))
_BY_STATUS = "status IN (SELECT value FROM json_each(:statuses))"
_BY_SOURCE = "source IN (SELECT value FROM json_each(:sources))"
_AFTER = "(created_at, job_id) < (:at, :after)"


class SqliteJobLedger:
    """The `JobLedger` port on one SQLite file (WAL mode); `open` before use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    @classmethod
    async def create(cls, path: Path) -> SqliteJobLedger:
        return await cls(path).open()

    @classmethod
    async def in_data_dir(cls, data_dir: Path) -> SqliteJobLedger:
        return await cls.create(data_dir / LEDGER_FILE)

    async def open(self) -> SqliteJobLedger:
        try:
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            await prepare(conn)
        except (sqlite3.Error, OSError) as exc:
            raise DependencyUnavailable(f"job ledger ({self.path}) unusable: {exc}") from exc
        self._conn = conn
        logger.info("job ledger: embedded SQLite at %s", self.path)
        return self

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def ping(self) -> None:
        await self._fetch("SELECT 1", {})

    async def claim(self, job: Job, source: str, owner: str, lease_seconds: float) -> JobRecord:
        params = {"job_id": job.job_id, "trace_id": job.trace_id, "source": source,
                  "job": json.dumps(job.to_data()), "owner": owner, "lease": lease_seconds,
                  "fingerprint": fingerprint(job)}
        rows = await self._fetch(_CLAIM, params)
        if rows:
            return job_record(rows[0])
        rows = await self._fetch(_GET, params)
        if rows:
            _same_job(rows[0], job, str(params["fingerprint"]))
        if rows and rows[0]["result"] is not None:  # finished, or waiting for a decision
            return job_record(rows[0])
        raise JobConflict(f"job {job.job_id} is running under another lease")

    async def renew(self, job_id: str, owner: str, lease_seconds: float) -> str | None:
        params = {"job_id": job_id, "owner": owner, "lease": lease_seconds}
        rows = await self._fetch(_RENEW, params)
        if not rows:
            raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
        return str(rows[0]["reason"]) if rows[0]["cancelled"] else None

    async def cancel(self, job_id: str, reason: str, *, keep_unknown: bool) -> JobRecord:
        params = {"job_id": job_id, "reason": reason}
        for _ in range(3):
            rows = await self._fetch(_CANCEL, params)
            if rows:
                return job_record(rows[0])
            known = await self._fetch(_GET, params)
            if known:
                raise JobFinished(f"job {job_id} already {known[0]['status']}")
            if not keep_unknown:
                raise JobNotFound(f"no job with id {job_id!r}")
            result = JobResult.cancelled(job_id, "", 0, reason)
            rows = await self._fetch(_CANCEL_UNKNOWN, {
                **params, "job": json.dumps(tombstone(job_id)),
                "result": json.dumps(result.to_record()), "event_id": result.event_id})
            if rows:
                return job_record(rows[0])
        raise JobConflict(f"job {job_id} changed while being cancelled; try again")

    async def finish(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        params = {"job_id": job_id, "owner": owner, "status": result.status,
                  "result": json.dumps(result.to_record()), "event_id": result.event_id}
        rows = await self._fetch(_FINISH, params)
        if not rows:
            rows = await self._fetch(_GET, params)
            if not rows or not job_record(rows[0]).finished:
                raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
        return JobResult.from_record(json.loads(rows[0]["result"]))

    async def interrupt(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        assert result.interrupt is not None, "an interrupted result holds its interrupt"
        rows = await self._fetch(_INTERRUPT, {
            "job_id": job_id, "owner": owner, "result": json.dumps(result.to_record()),
            "interrupt_id": str(result.interrupt["interrupt_id"])})
        if not rows:
            raise LeaseLost(f"job {job_id}: lease no longer held by {owner}")
        return JobResult.from_record(json.loads(rows[0]["result"]))

    async def resume(self, job_id: str, resume: Resume) -> JobRecord:
        params = {"job_id": job_id, "interrupt_id": resume.interrupt_id,
                  "resume": json.dumps(resume.to_data())}
        rows = await self._fetch(_RESUME, params)
        if rows:
            return job_record(rows[0])
        state = await self._fetch(_STATE, params)
        raise not_resumable(job_id, resume.interrupt_id,
                            state[0]["status"] if state else None,
                            state[0]["last_interrupt_id"] if state else None)

    async def retry(self, job_id: str) -> JobRecord:
        rows = await self._fetch(_RETRY, {"job_id": job_id})
        if rows:
            return job_record(rows[0])
        state = await self._fetch(_STATE, {"job_id": job_id})
        raise not_retryable(job_id, state[0]["status"] if state else None,
                            bool(state and state[0]["tombstone"]))

    async def abandon(self, job: Job, source: str, result: JobResult) -> JobResult:
        params = {"job_id": job.job_id, "trace_id": job.trace_id, "source": source,
                  "status": result.status, "attempts": result.attempts,
                  "job": json.dumps(job.to_data()), "result": json.dumps(result.to_record()),
                  "fingerprint": fingerprint(job), "event_id": result.event_id}
        rows = await self._fetch(_ABANDON, params)
        if not rows:
            rows = await self._fetch(_GET, params)
            if rows:
                _same_job(rows[0], job, str(params["fingerprint"]))
            if not rows or rows[0]["result"] is None:
                raise JobConflict(f"job {job.job_id} is running under another lease")
        return JobResult.from_record(json.loads(rows[0]["result"]))

    async def mark_published(self, job_id: str, event_id: str) -> None:
        await self._fetch(_PUBLISHED, {"job_id": job_id, "event_id": event_id})

    async def unpublished(self, older_than_seconds: float, limit: int) -> list[JobResult]:
        rows = await self._fetch(_UNPUBLISHED, {"age": older_than_seconds, "limit": limit})
        return [JobResult.from_record(json.loads(row["result"])) for row in rows]

    async def release(self, job_id: str, owner: str) -> None:
        await self._fetch(_RELEASE, {"job_id": job_id, "owner": owner})

    async def claim_orphan(self, sources: frozenset[str], owner: str,
                           lease_seconds: float) -> tuple[Job, JobRecord] | None:
        params = {"sources": json.dumps(sorted(sources)), "owner": owner,
                  "lease": lease_seconds}
        rows = await self._fetch(_ORPHAN, params)
        if not rows:
            return None
        data = json.loads(rows[0]["job"])
        job = Job.from_data(data)
        return job, job_record(rows[0])

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(_GET, {"job_id": job_id})
        return job_record(rows[0]) if rows else None

    async def list_jobs(self, query: JobQuery) -> JobPage:
        params: dict[str, Any] = {"limit": query.limit + 1,
                                  "statuses": json.dumps(sorted(query.statuses)),
                                  "sources": json.dumps(sorted(query.sources))}
        where = [clause for wanted, clause in ((query.statuses, _BY_STATUS),
                                               (query.sources, _BY_SOURCE)) if wanted]
        if query.cursor is not None:
            params["at"], params["after"] = number_cursor(query.cursor)
            where.append(_AFTER)
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self._fetch(f"SELECT {_LIST_COLUMNS} FROM job_ledger {condition}"
                                 "ORDER BY created_at DESC, job_id DESC LIMIT :limit", params)
        records = [job_record(row) for row in rows[:query.limit]]
        more = len(rows) > query.limit
        return JobPage(records, encode_cursor(rows[query.limit - 1]["created_at"],
                                              rows[query.limit - 1]["job_id"])
                       if more else None)

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        """Run one statement to completion (committing it); the one place SQLite
        errors become domain errors. Only the parameters `sql` names are bound."""
        async with self._connection() as conn:
            bound = {**params, "now": time.time()}
            rows = await conn.execute_fetchall(sql, bound)
            return list(rows)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._conn is None:
            raise DependencyUnavailable(f"job ledger ({self.path}) is not open")
        try:
            yield self._conn
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise DependencyUnavailable(f"job ledger ({self.path}) failed: {exc}") from exc


class SqliteReadinessProbe:
    """`/ready`'s "postgres" check when the ledger is the embedded SQLite file."""

    name = "postgres"

    def __init__(self, ledger: SqliteJobLedger) -> None:
        self._ledger = ledger

    async def check(self) -> ProbeResult:
        try:
            await asyncio.wait_for(self._ledger.ping(), timeout=1.0)
        except (DependencyUnavailable, TimeoutError) as exc:
            return ProbeResult(ok=False, embedded=True, detail=str(exc) or "no answer within 1s")
        return ProbeResult(ok=True, embedded=True)


def _same_job(row: sqlite3.Row, job: Job, print_: str) -> None:
    if row["fingerprint"] is not None and row["fingerprint"] != print_:
        raise JobMismatch(mismatch_message(job.job_id))
