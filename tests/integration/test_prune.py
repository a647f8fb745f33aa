"""Retention against a real PostgreSQL: exactly the old finished jobs go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.adapters.postgres.prune import PruneReport, parse_duration, prune
from agent_executor.domain.errors import DependencyUnavailable
from tests.integration.conftest import PostgresDatabase
from tests.integration.test_migrations import migrated
from tests.ledger_contract import LEASE, completed, failed, make_job

# per job thread: checkpoints, blobs, writes (two namespaces: root and a sub-agent)
ROWS = (2, 3, 4)


@pytest.fixture
async def db(postgres_db: PostgresDatabase) -> AsyncIterator[Any]:
    await migrated(postgres_db)
    conn = await asyncpg.connect(postgres_db.dsn)
    yield conn
    await conn.close()


async def _checkpoint_rows(conn: Any, thread_id: str) -> None:
    checkpoints, blobs, writes = ROWS
    for i in range(checkpoints):
        await conn.execute(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint) "
            "VALUES ($1, $2, $3, '{}')", thread_id, "" if i == 0 else "task:1", f"c{i}")
    for i in range(blobs):
        await conn.execute(
            "INSERT INTO checkpoint_blobs (thread_id, channel, version, type, blob) "
            "VALUES ($1, 'messages', $2, 'msgpack', '\\x00')", thread_id, str(i))
    for i in range(writes):
        await conn.execute(
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, "
            "blob) VALUES ($1, 'c0', 't', $2, 'messages', '\\x00')", thread_id, i)


async def _counts(conn: Any, thread_id: str) -> tuple[int, int, int, bool]:
    return (await conn.fetchval("SELECT count(*) FROM checkpoints WHERE thread_id = $1",
                                thread_id),
            await conn.fetchval("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = $1",
                                thread_id),
            await conn.fetchval("SELECT count(*) FROM checkpoint_writes WHERE thread_id = $1",
                                thread_id),
            await conn.fetchval("SELECT EXISTS (SELECT 1 FROM job_ledger WHERE job_id = $1)",
                                thread_id))


async def test_prune_removes_exactly_old_finished_jobs(
        db: Any, postgres_db: PostgresDatabase) -> None:
    settings = PostgresSettings(host=postgres_db.host, port=postgres_db.port,
                                database=postgres_db.database, user=postgres_db.user,
                                password="", schema="public")
    ledger = await PostgresJobLedger.create(settings)
    try:
        old = ["old-done-1", "old-done-2", "old-failed"]
        kept = ["recent-done", "old-running", "old-released", "young-done", "old-done-unsent"]
        for job_id in old + kept:
            job = make_job(job_id)
            await ledger.claim(job, "http", "w", LEASE)
            if "done" in job_id:
                await ledger.finish(job_id, "w", completed(job))
            elif job_id.endswith("failed"):
                await ledger.finish(job_id, "w", failed(job))
            if job_id in old or job_id in ("recent-done", "young-done"):
                record = await ledger.get(job_id)
                assert record is not None and record.result is not None
                # "old-done-unsent": still owed
                await ledger.mark_published(job_id, record.result.event_id)
            elif job_id == "old-released":
                await ledger.release(job_id, "w")
            await _checkpoint_rows(db, job_id)
        await _checkpoint_rows(db, "thread-without-a-job")
        await db.execute(
            "UPDATE job_ledger SET created_at = now() - interval '30 days', "
            "started_at = now() - interval '30 days', "
            "finished_at = CASE WHEN finished_at IS NULL THEN NULL "
            "                   ELSE now() - interval '8 days' END "
            "WHERE job_id LIKE 'old-%'")
        await db.execute("UPDATE job_ledger SET finished_at = now() - interval '6 days 23 hours' "
                         "WHERE job_id = 'recent-done'")

        report = await prune(ledger.pool, "public", parse_duration("7d"), batch_size=2)

        checkpoints, blobs, writes = ROWS
        assert report == PruneReport(jobs=3, checkpoints=3 * checkpoints,
                                     checkpoint_blobs=3 * blobs,
                                     checkpoint_writes=3 * writes, batches=2)
        assert "removed 3 finished job(s)" in report.summary()
        for job_id in old:
            assert await _counts(db, job_id) == (0, 0, 0, False)
            assert await ledger.get(job_id) is None
        for job_id in [*kept, "thread-without-a-job"]:
            assert await _counts(db, job_id) == (*ROWS, job_id != "thread-without-a-job")
        running = await ledger.get("old-running")
        assert running is not None and running.status == "running"

        again = await prune(settings, "public", timedelta(days=7), batch_size=2)
        assert again == PruneReport(batches=1)
    finally:
        await ledger.aclose()


async def test_prune_with_a_uri_and_nothing_to_do(db: Any, postgres_db: PostgresDatabase) -> None:
    assert await prune(postgres_db.dsn, "public", timedelta(hours=1)) == PruneReport(batches=1)


async def test_prune_of_an_unreachable_database_is_dependency_unavailable() -> None:
    settings = PostgresSettings(host="127.0.0.1", port=1, database="x", user="postgres",
                                password="", schema="public")
    with pytest.raises(DependencyUnavailable, match="prune"):
        await prune(settings, "public", timedelta(days=7))


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), (" 7D ", timedelta(days=7)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-7d", "0d", "1.5h", "7 days", "7d12h"])
def test_parse_duration_refuses_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*for example 7d, 12h, 30m"):
        parse_duration(text)
