"""`PostgresJobLedger` against a real PostgreSQL, migrated by the real script."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.adapters.postgres.probe import PostgresReadinessProbe
from agent_executor.adapters.postgres.schema import REQUIRED_MIGRATIONS
from agent_executor.domain.errors import DependencyUnavailable
from tests.integration.conftest import PostgresDatabase
from tests.integration.test_migrations import migrated
from tests.ledger_contract import LEASE, LedgerContract, completed, make_job


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
