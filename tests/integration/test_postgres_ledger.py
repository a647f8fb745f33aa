"""`PostgresJobLedger` against a real PostgreSQL, migrated by the real script."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.adapters.postgres.probe import PostgresReadinessProbe
from agent_executor.adapters.postgres.schema import REQUIRED_MIGRATIONS
from agent_executor.domain.errors import DependencyUnavailable
from tests.integration.conftest import PostgresDatabase
from tests.integration.test_migrations import migrated, run_migrations
from tests.ledger_contract import (
    LEASE,
    ROWS_BEFORE_STEERING,
    A,
    LedgerContract,
    check_rows_from_before_steering,
    completed,
    make_job,
    paused,
    result_before_steering,
)


def settings(db: PostgresDatabase, schema: str = "public", port: int | None = None
             ) -> PostgresSettings:
    return PostgresSettings(host=db.host, port=port or db.port, database=db.database,
                            user=db.user, password="", schema=schema)


class TestPostgresJobLedger(LedgerContract):
    @pytest.fixture
    async def ledger(self, postgres_db: PostgresDatabase) -> AsyncIterator[PostgresJobLedger]:
        await migrated(postgres_db)
        ledger = await PostgresJobLedger.create(settings(postgres_db), max_size=10)
        yield ledger
        await ledger.aclose()


async def test_works_in_its_own_schema(postgres_db: PostgresDatabase) -> None:
    schema = 'Agent "Exec"'
    await migrated(postgres_db, schema)
    ledger = await PostgresJobLedger.create(settings(postgres_db, schema))
    try:
        job = make_job()
        await ledger.claim(job, "http", "worker-a", LEASE)
        result = await ledger.finish(job.job_id, "worker-a", completed(job))
        record = await ledger.get(job.job_id)
        assert record is not None and record.result == result
    finally:
        await ledger.aclose()
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        row = await conn.fetchrow(
            'SELECT status, finished_at, lease_owner FROM "Agent ""Exec""".job_ledger')
        assert (row["status"], row["lease_owner"]) == ("completed", None)
        assert row["finished_at"] is not None
    finally:
        await conn.close()


async def test_unreachable_database_is_dependency_unavailable(
        postgres_db: PostgresDatabase) -> None:
    ledger = await PostgresJobLedger.create(settings(postgres_db, port=1))  # lazy: no error yet
    try:
        with pytest.raises(DependencyUnavailable, match="PostgreSQL"):
            await ledger.claim(make_job(), "http", "worker-a", LEASE)
        with pytest.raises(DependencyUnavailable):
            await ledger.get("job-1")
    finally:
        await ledger.aclose()


async def test_missing_table_is_dependency_unavailable(postgres_db: PostgresDatabase) -> None:
    ledger = await PostgresJobLedger.create(settings(postgres_db))  # no migrations ran
    try:
        with pytest.raises(DependencyUnavailable, match="job_ledger"):
            await ledger.get("job-1")
    finally:
        await ledger.aclose()


async def test_readiness_probe_runs_a_query(postgres_db: PostgresDatabase) -> None:
    await migrated(postgres_db)
    ledger = await PostgresJobLedger.create(settings(postgres_db))
    down = await PostgresJobLedger.create(settings(postgres_db, port=1))
    try:
        probe = PostgresReadinessProbe(ledger.pool)
        assert probe.name == "postgres"
        result = await probe.check()
        assert (result.ok, result.embedded) == (True, False)
        failed = await PostgresReadinessProbe(down.pool, timeout_seconds=3).check()
        assert not failed.ok and failed.detail
    finally:
        await ledger.aclose()
        await down.aclose()


async def test_readiness_names_the_missing_migration(postgres_db: PostgresDatabase) -> None:
    """A pod whose migrations never ran (or not this version's) is not ready."""
    ledger = await PostgresJobLedger.create(settings(postgres_db))
    try:
        probe = PostgresReadinessProbe(ledger.pool)
        never = await probe.check()
        assert not never.ok and never.detail is not None
        assert "0001_job_ledger.sql" in never.detail and "run-migrations" in never.detail
        await migrated(postgres_db)
        async with ledger.pool.acquire() as conn:  # as if this version's file had not run
            await conn.execute("DELETE FROM schema_migrations WHERE filename = $1",
                               REQUIRED_MIGRATIONS[-1])
        behind = await probe.check()
        assert not behind.ok and behind.detail is not None
        assert REQUIRED_MIGRATIONS[-1] in behind.detail
    finally:
        await ledger.aclose()


def test_the_required_migrations_are_the_files_in_migrations() -> None:
    folder = Path(__file__).resolve().parents[2] / "migrations"
    assert REQUIRED_MIGRATIONS == tuple(sorted(p.name for p in folder.glob("*.sql")))


async def test_list_pages_jobs_created_at_the_same_instant_by_job_id(
        postgres_db: PostgresDatabase) -> None:
    from agent_executor.domain.listing import JobQuery
    await migrated(postgres_db)
    ledger = await PostgresJobLedger.create(settings(postgres_db))
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        ids = [f"tie-{c}" for c in "bAaé_Z9"] + [f"tie-{i}" for i in range(10, 40)]
        for job_id in ids:
            await ledger.claim(make_job(job_id), "nats", "worker-a", LEASE)
        await conn.execute("UPDATE job_ledger SET created_at = '2026-01-01T00:00:00.5Z'")
        seen: list[str] = []
        cursor = None
        while True:
            page = await ledger.list_jobs(JobQuery(limit=7, cursor=cursor))
            seen += [r.job_id for r in page.records]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids, reverse=True)  # code point order whatever the collation
        await conn.execute("SET enable_seqscan = off")  # a small table: show the index fits
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT job_id FROM job_ledger WHERE (created_at, job_id COLLATE \"C\") "
            "< (now(), '') ORDER BY created_at DESC, job_id COLLATE \"C\" DESC LIMIT 8"))
        assert "job_ledger_list_idx" in plan and "Sort" not in plan, plan
    finally:
        await conn.close()
        await ledger.aclose()


async def test_the_outbox_and_the_reaper_read_along_their_indexes(
        postgres_db: PostgresDatabase) -> None:
    """Interrupted jobs (many may wait for people) are in neither scan's way."""
    await migrated(postgres_db)
    ledger = await PostgresJobLedger.create(settings(postgres_db))
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        for i in range(20):
            job = make_job(f"index-{i}")
            await ledger.claim(job, "http", "worker-a", LEASE)
            if i % 2:
                await ledger.interrupt(job.job_id, "worker-a", paused(job))
        await conn.execute("ANALYZE job_ledger")
        # a small table: show that an ordered scan of the index fits
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_bitmapscan = off")
        for sql, args, index in (
                (ledger._unpublished_sql, [0.0, 10], "job_ledger_unpublished_idx"),
                (ledger._orphan_sql, [["http"], "worker-b", 30.0],
                 "job_ledger_unfinished_lease_idx")):
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
            assert index in plan and "Sort" not in plan, plan
        waiting = await conn.fetchval(  # the reaper's index holds no interrupted job
            "SELECT count(*) FROM job_ledger WHERE finished_at IS NULL "
            "AND status <> 'interrupted'")
        entries = await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE relname = 'job_ledger_unfinished_lease_idx'")
        assert (waiting, entries) == (10, 10)
    finally:
        await conn.close()
        await ledger.aclose()


async def test_rows_recorded_before_0006_get_their_event_ids(
        postgres_db: PostgresDatabase, tmp_path: Path) -> None:
    folder = Path(__file__).resolve().parents[2] / "migrations"
    for source in sorted(folder.glob("*.sql")):
        if source.name < "0006":
            (tmp_path / source.name).write_text(source.read_text())
    before = await run_migrations(postgres_db, MIGRATIONS_DIR=str(tmp_path))
    assert before.returncode == 0, before.output
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        for job_id, status, run in ROWS_BEFORE_STEERING:
            running = status == "running"
            await conn.execute(
                "INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, "
                "result, finished_at, run, lease_owner, lease_expires_at) "
                "VALUES ($1, 't', 'http', $2, 1, $3::jsonb, $4::jsonb, $5, $6, $7, $8)",
                job_id, status, json.dumps(make_job(job_id).to_data()),
                result_before_steering(job_id, status, run), None if running else now(),
                run, A if running else None, now() + timedelta(hours=1) if running else None)
        await migrated(postgres_db)
        ids = dict(await conn.fetch("SELECT job_id, event_id FROM job_ledger"))
        assert ids == {"old-1": "old-1:completed", "old-2": "old-2:failed:2",
                       "old-running": None}
    finally:
        await conn.close()
    ledger = await PostgresJobLedger.create(settings(postgres_db))
    try:
        await check_rows_from_before_steering(ledger)
    finally:
        await ledger.aclose()


def now() -> datetime:
    return datetime.now(UTC)
