from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger, SqliteReadinessProbe
from agent_executor.domain.errors import DependencyUnavailable, JobConflict
from agent_executor.domain.health import ProbeResult
from tests.ledger_contract import (
    LEASE,
    ROWS_BEFORE_STEERING,
    A,
    LedgerContract,
    approve,
    check_rows_from_before_steering,
    completed,
    make_job,
    result_before_steering,
)


class TestSqliteJobLedger(LedgerContract):
    @pytest.fixture
    async def ledger(self, tmp_path: Path) -> AsyncIterator[SqliteJobLedger]:
        ledger = await SqliteJobLedger.create(tmp_path / "ledger.sqlite3")
        yield ledger
        await ledger.aclose()


async def test_records_survive_a_reopen(tmp_path: Path) -> None:
    done, running = make_job("done"), make_job("running")
    ledger = await SqliteJobLedger.in_data_dir(tmp_path / "data")
    await ledger.claim(done, "nats", "worker-a", LEASE)
    result = await ledger.finish(done.job_id, "worker-a", completed(done))
    await ledger.claim(running, "http", "worker-a", LEASE)
    await ledger.aclose()

    reopened = await SqliteJobLedger.in_data_dir(tmp_path / "data")
    try:
        record = await reopened.claim(done, "nats", "worker-b", LEASE)
        assert (record.status, record.attempts, record.result) == ("completed", 1, result)
        with pytest.raises(JobConflict):  # the lease outlives the process
            await reopened.claim(running, "http", "worker-b", LEASE)
        await reopened.release(running.job_id, "worker-a")
        orphan = await reopened.claim_orphan(frozenset({"http"}), "worker-b", LEASE)
        assert orphan is not None and orphan[0] == running
    finally:
        await reopened.aclose()


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    ledger = await SqliteJobLedger.create(tmp_path / "ledger.sqlite3")
    await ledger.aclose()
    assert (tmp_path / "ledger.sqlite3").exists()
    assert (tmp_path / "ledger.sqlite3").read_bytes()[18:20] == b"\x02\x02"  # WAL versions


async def test_probe_reports_embedded_and_a_closed_ledger(tmp_path: Path) -> None:
    ledger = await SqliteJobLedger.create(tmp_path / "ledger.sqlite3")
    probe = SqliteReadinessProbe(ledger)
    assert probe.name == "postgres"
    assert await probe.check() == ProbeResult(ok=True, embedded=True)
    await ledger.aclose()
    closed = await probe.check()
    assert (closed.ok, closed.embedded) == (False, True)
    with pytest.raises(DependencyUnavailable):
        await ledger.get("x")


async def test_an_unusable_path_is_dependency_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DependencyUnavailable):
        await SqliteJobLedger.create(tmp_path / "file" / "ledger.sqlite3")


async def test_list_pages_jobs_created_at_the_same_instant_by_job_id(tmp_path: Path) -> None:
    import sqlite3

    from agent_executor.domain.listing import JobQuery
    ledger = await SqliteJobLedger.create(tmp_path / "ledger.sqlite3")
    try:
        ids = [f"tie-{c}" for c in "bAaé_Z9"] + [f"tie-{i}" for i in range(10, 40)]
        for job_id in ids:
            await ledger.claim(make_job(job_id), "http", "worker-a", LEASE)
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
            conn.execute("UPDATE job_ledger SET created_at = 1700000000.123456")
        seen: list[str] = []
        cursor = None
        while True:
            page = await ledger.list_jobs(JobQuery(limit=7, cursor=cursor))
            seen += [r.job_id for r in page.records]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids, reverse=True)  # code point order, each once
    finally:
        await ledger.aclose()


# the table as the version before steering (interrupts, retries) created it
_BEFORE_STEERING = """
CREATE TABLE job_ledger (
    job_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, source TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, job TEXT NOT NULL, lease_owner TEXT,
    lease_expires_at REAL, result TEXT, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, updated_at REAL NOT NULL, published_at REAL, fingerprint TEXT,
    run INTEGER NOT NULL DEFAULT 1, cancel_requested_at REAL, cancel_reason TEXT);
"""


async def test_a_file_from_before_steering_keeps_working(tmp_path: Path) -> None:
    import json
    import sqlite3
    import time

    path = tmp_path / "ledger.sqlite3"
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.executescript(_BEFORE_STEERING)
        for job_id, status, run in ROWS_BEFORE_STEERING:
            running = status == "running"
            conn.execute(
                "INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, "
                "lease_owner, lease_expires_at, result, created_at, started_at, finished_at, "
                "updated_at, run) VALUES (?, 't', 'http', ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, status, json.dumps(make_job(job_id).to_data()),
                 A if running else None, now + 3600 if running else None,
                 result_before_steering(job_id, status, run), now, now,
                 None if running else now, now, run))
    ledger = await SqliteJobLedger.create(path)
    try:
        await check_rows_from_before_steering(ledger)
    finally:
        await ledger.aclose()
    reopened = await SqliteJobLedger.create(path)  # opening again adds nothing twice
    try:
        record = await reopened.get("old-running")
        assert record is not None and record.resume == approve()
    finally:
        await reopened.aclose()
