"""Retention: remove the ledger rows and checkpoints of jobs finished long ago.

Run by `agent-executor prune --older-than 7d` (a Kubernetes CronJob, see
docs/operations.md). A job whose row is gone is unknown to the service: a late
re-delivery of it would run it again, so keep the retention longer than any
transport keeps messages.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.pool import DRIVER_ERRORS, quote_ident
from agent_executor.domain.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` to a timedelta; anything else is a ValueError."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: expected a positive whole number "
                         "followed by s, m, h, d or w (for example 7d, 12h, 30m)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class PruneReport:
    jobs: int = 0
    checkpoints: int = 0
    checkpoint_blobs: int = 0
    checkpoint_writes: int = 0
    batches: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(self.jobs + other.jobs, self.checkpoints + other.checkpoints,
                           self.checkpoint_blobs + other.checkpoint_blobs,
                           self.checkpoint_writes + other.checkpoint_writes,
                           self.batches + other.batches)

    def summary(self) -> str:
        return (f"removed {self.jobs} finished job(s), {self.checkpoints} checkpoint(s), "
                f"{self.checkpoint_blobs} checkpoint blob(s) and {self.checkpoint_writes} "
                f"checkpoint write(s) in {self.batches} batch(es)")


def _batch_sql(schema: str) -> str:
    s = quote_ident(schema)
    # One statement a batch: the jobs, then their threads' checkpoint rows, all or nothing.
    # A finished job never becomes unfinished, so nothing running is ever selected; a
    # result still owed to the bus (published_at NULL, the outbox) is kept until it went.
    return f"""
        WITH doomed AS (
            SELECT job_id FROM {s}.job_ledger
             WHERE finished_at < now() - $1::interval AND published_at IS NOT NULL
             ORDER BY finished_at
             LIMIT $2
               FOR UPDATE SKIP LOCKED),
        writes AS (DELETE FROM {s}.checkpoint_writes
                    WHERE thread_id IN (SELECT job_id FROM doomed) RETURNING 1),
        blobs AS (DELETE FROM {s}.checkpoint_blobs
                   WHERE thread_id IN (SELECT job_id FROM doomed) RETURNING 1),
        checkpoints AS (DELETE FROM {s}.checkpoints
                         WHERE thread_id IN (SELECT job_id FROM doomed) RETURNING 1),
        jobs AS (DELETE FROM {s}.job_ledger
                  WHERE job_id IN (SELECT job_id FROM doomed) RETURNING 1)
        SELECT (SELECT count(*) FROM jobs) AS jobs,
               (SELECT count(*) FROM checkpoints) AS checkpoints,
               (SELECT count(*) FROM blobs) AS checkpoint_blobs,
               (SELECT count(*) FROM writes) AS checkpoint_writes"""


async def prune(db: Any, schema: str, older_than: timedelta, *,
                batch_size: int = 500) -> PruneReport:
    """Delete jobs finished more than `older_than` ago and their checkpoints.

    `db` is an asyncpg pool or connection, a `PostgresSettings` or a
    `postgresql://` URI. Each batch of `batch_size` jobs is its own transaction,
    so locks stay short and an interrupted prune keeps what it did. Raises
    `DependencyUnavailable` when the database fails.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if older_than <= timedelta(0):
        raise ValueError("older_than must be positive")
    sql = _batch_sql(schema)
    total = PruneReport()
    try:
        conn, close = await _connect(db)
        try:
            while True:
                row = await conn.fetchrow(sql, older_than, batch_size)
                batch = PruneReport(row["jobs"], row["checkpoints"], row["checkpoint_blobs"],
                                    row["checkpoint_writes"], 1)
                total += batch
                logger.info("prune batch %d: %s", total.batches, batch.summary())
                if batch.jobs < batch_size:
                    return total
        finally:
            await close()
    except DRIVER_ERRORS as exc:
        raise DependencyUnavailable(
            f"prune: PostgreSQL failed after {total.summary()}: {type(exc).__name__}: {exc}"
        ) from exc


async def _connect(db: Any) -> tuple[Any, Any]:
    """A connection and the coroutine function that gives it back."""
    if isinstance(db, PostgresSettings):
        conn = await asyncpg.connect(host=db.host, port=db.port, database=db.database,
                                     user=db.user, password=db.password or None,
                                     statement_cache_size=0, timeout=CONNECT_TIMEOUT_SECONDS)
        return conn, conn.close
    if isinstance(db, str):
        conn = await asyncpg.connect(db, statement_cache_size=0, timeout=CONNECT_TIMEOUT_SECONDS)
        return conn, conn.close
    if isinstance(db, asyncpg.Pool):
        conn = await db.acquire()

        async def release() -> None:
            await db.release(conn)
        return conn, release

    async def keep() -> None:
        return None
    return db, keep
