"""The embedded job ledger's file: its table and indexes, the upgrade of a file an
older version wrote (columns added since, with what its rows get), and a row read
back as a `JobRecord`. `SqliteJobLedger` (sqlite_ledger.py) holds the statements."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import aiosqlite

from agent_executor.domain.interrupts import Resume
from agent_executor.domain.result import JobRecord, JobResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_ledger (
    job_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    job TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at REAL,
    result TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    published_at REAL,
    fingerprint TEXT,
    run INTEGER NOT NULL DEFAULT 1,
    cancel_requested_at REAL,
    cancel_reason TEXT,
    event_id TEXT,
    interrupts INTEGER NOT NULL DEFAULT 0,
    last_interrupt_id TEXT,
    interrupted_at REAL,
    resume TEXT,
    run_attempts_before INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS job_ledger_unfinished_lease_idx
    ON job_ledger (lease_expires_at) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS job_ledger_list_idx ON job_ledger (created_at, job_id);
CREATE INDEX IF NOT EXISTS job_ledger_list_status_idx
    ON job_ledger (status, created_at, job_id);
"""


async def prepare(conn: aiosqlite.Connection) -> None:
    """WAL mode and a 5 s busy timeout (several processes may share the file), then
    the table: created, or an older file's upgraded."""
    await conn.execute("PRAGMA busy_timeout = 5000")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.executescript(_SCHEMA)
    await _add_missing_columns(conn)


# Columns later versions added, with what rows of an older file get.
_ADDED_COLUMNS = (
    ("published_at", "REAL", "UPDATE job_ledger SET published_at = finished_at "
                             "WHERE finished_at IS NOT NULL"),
    ("fingerprint", "TEXT", None),
    ("run", "INTEGER NOT NULL DEFAULT 1", None),
    ("cancel_requested_at", "REAL", None),
    ("cancel_reason", "TEXT", None),
    ("event_id", "TEXT", "UPDATE job_ledger SET event_id = job_id || ':' || status || "
                         "CASE WHEN run > 1 THEN ':' || run ELSE '' END "
                         "WHERE result IS NOT NULL"),
    ("interrupts", "INTEGER NOT NULL DEFAULT 0", None),
    ("last_interrupt_id", "TEXT", None),
    ("interrupted_at", "REAL", None),
    ("resume", "TEXT", None),
    ("run_attempts_before", "INTEGER NOT NULL DEFAULT 0", None),
)


async def _add_missing_columns(conn: aiosqlite.Connection) -> None:
    columns = {row[1] for row in await conn.execute_fetchall("PRAGMA table_info(job_ledger)")}
    for name, kind, backfill in _ADDED_COLUMNS:
        if name not in columns:
            await conn.execute(f"ALTER TABLE job_ledger ADD COLUMN {name} {kind}")
            if backfill:
                await conn.execute(backfill)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def job_record(row: sqlite3.Row) -> JobRecord:
    result = row["result"]
    created = _time(row["created_at"])
    updated = _time(row["updated_at"])
    assert created is not None and updated is not None
    return JobRecord(job_id=row["job_id"], trace_id=row["trace_id"], status=row["status"],
                     attempts=row["attempts"], source=row["source"], created_at=created,
                     updated_at=updated, started_at=_time(row["started_at"]), run=row["run"],
                     cancel_reason=row["cancel_reason"],
                     result=None if result is None else JobResult.from_record(json.loads(result)),
                     resume=None if row["resume"] is None
                     else Resume.from_data(json.loads(row["resume"])),
                     run_attempts=row["attempts"] - row["run_attempts_before"])
