from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger, SqliteReadinessProbe
from agent_executor.domain.errors import DependencyUnavailable, JobConflict
from agent_executor.domain.health import ProbeResult
from tests.ledger_contract import LEASE, LedgerContract, completed, make_job


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
