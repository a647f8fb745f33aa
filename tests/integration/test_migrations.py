"""scripts/ci/run-migrations.sh against a real PostgreSQL (CONTRACT section 9)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from tests.integration.conftest import PostgresDatabase

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ci" / "run-migrations.sh"


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    seconds: float


async def run_migrations(db: PostgresDatabase, schema: str = "public", **env: str) -> Run:
    """Run the script as the init container does; returns its exit code and output."""
    variables = {**os.environ, **db.env(), "POSTGRES_SCHEMA": schema, **env}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        "bash", str(SCRIPT), env=variables, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, output.decode(), time.monotonic() - started)


async def migrated(db: PostgresDatabase, schema: str = "public") -> None:
    run = await run_migrations(db, schema)
    assert run.returncode == 0, run.output


async def test_empty_database_then_nothing_left_to_apply(postgres_db: PostgresDatabase) -> None:
    first = await run_migrations(postgres_db)
    assert first.returncode == 0, first.output
    assert "applied 0001_job_ledger.sql" in first.output
    assert "applied 0002_langgraph_checkpoints.sql" in first.output
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        applied = await conn.fetch("SELECT filename, applied_at FROM schema_migrations")
        assert sorted(r["filename"] for r in applied) == [
            "0001_job_ledger.sql", "0002_langgraph_checkpoints.sql", "0003_result_outbox.sql",
            "0004_job_list_index.sql", "0005_job_lifecycle.sql",
            "0006_steering.sql"]

        second = await run_migrations(postgres_db)
        assert second.returncode == 0, second.output
        assert "nothing to apply" in second.output and "applied 0" not in second.output
        assert await conn.fetch("SELECT filename, applied_at FROM schema_migrations") == applied
    finally:
        await conn.close()


async def test_schema_is_created_and_used(postgres_db: PostgresDatabase) -> None:
    await migrated(postgres_db, "agent Exec")
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            "agent Exec")}
        assert tables == {"schema_migrations", "job_ledger", "checkpoint_migrations",
                          "checkpoints", "checkpoint_blobs", "checkpoint_writes"}
        assert await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == 0
    finally:
        await conn.close()


async def test_wrong_database_fails_within_the_wait(postgres_db: PostgresDatabase) -> None:
    wrong = PostgresDatabase(postgres_db.host, postgres_db.port, postgres_db.user,
                             postgres_db.database + "_missing")
    run = await run_migrations(wrong, MIGRATIONS_WAIT_SECONDS="2")
    assert run.returncode != 0
    assert run.seconds < 15
    assert f"{wrong.database}" in run.output and "does not exist" in run.output
    assert "within 2s" in run.output


async def test_unreachable_host_fails_within_the_wait(postgres_db: PostgresDatabase) -> None:
    run = await run_migrations(postgres_db, POSTGRES_PORT="1", MIGRATIONS_WAIT_SECONDS="2")
    assert run.returncode != 0
    assert run.seconds < 15
    assert f"{postgres_db.host}:1/{postgres_db.database}" in run.output
    assert "within 2s" in run.output


async def test_changed_applied_file_is_refused(postgres_db: PostgresDatabase,
                                               tmp_path: Path) -> None:
    for source in sorted((ROOT / "migrations").glob("*.sql")):
        (tmp_path / source.name).write_text(source.read_text())
    first = await run_migrations(postgres_db, MIGRATIONS_DIR=str(tmp_path))
    assert first.returncode == 0, first.output
    with (tmp_path / "0001_job_ledger.sql").open("a") as edited:
        edited.write("\n-- edited after it ran\n")
    run = await run_migrations(postgres_db, MIGRATIONS_DIR=str(tmp_path))
    assert run.returncode != 0
    assert "0001_job_ledger.sql" in run.output and "changed" in run.output


async def test_failing_file_stops_the_run_and_leaves_nothing(postgres_db: PostgresDatabase,
                                                             tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE first_one (x int);\n")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half_done (x int);\nSELECT 1/0;\n")
    (tmp_path / "0003_never.sql").write_text("CREATE TABLE never_reached (x int);\n")
    run = await run_migrations(postgres_db, MIGRATIONS_DIR=str(tmp_path))
    assert run.returncode != 0
    assert "0002_bad.sql failed" in run.output and "division by zero" in run.output
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"schema_migrations", "first_one"}
        assert await conn.fetchval("SELECT array_agg(filename) FROM schema_migrations") == [
            "0001_ok.sql"]
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_file_once(postgres_db: PostgresDatabase) -> None:
    runs = await asyncio.gather(*(run_migrations(postgres_db) for _ in range(4)))
    assert [r.returncode for r in runs] == [0, 0, 0, 0], [r.output for r in runs]
    applied = sum(r.output.count("run-migrations: applied 0") for r in runs)
    assert applied == len(list((ROOT / "migrations").glob("*.sql")))


async def test_saver_setup_then_has_nothing_left_to_do(postgres_db: PostgresDatabase) -> None:
    await migrated(postgres_db)
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        before = await _catalog(conn)
        versions = await conn.fetch("SELECT v FROM checkpoint_migrations ORDER BY v")
        assert [r["v"] for r in versions] == list(range(len(AsyncPostgresSaver.MIGRATIONS)))

        async with AsyncPostgresSaver.from_conn_string(postgres_db.dsn) as saver:
            await saver.setup()

        assert await _catalog(conn) == before
        assert await conn.fetch("SELECT v FROM checkpoint_migrations ORDER BY v") == versions
    finally:
        await conn.close()


async def test_migrations_create_exactly_what_setup_creates(
        postgres_db: PostgresDatabase) -> None:
    await migrated(postgres_db)
    conn = await asyncpg.connect(postgres_db.dsn)
    try:
        await conn.execute("CREATE SCHEMA saver_only")
        async with AsyncPostgresSaver.from_conn_string(
                postgres_db.dsn + "?options=-csearch_path%3Dsaver_only") as saver:
            await saver.setup()
        checkpoint_tables = {"checkpoint_migrations", "checkpoints", "checkpoint_blobs",
                             "checkpoint_writes"}
        ours = await _catalog(conn, "public", checkpoint_tables)
        theirs = await _catalog(conn, "saver_only", checkpoint_tables)
        assert ours == theirs
        assert len(ours["columns"]) == 23 and len(ours["indexes"]) == 7
        assert await conn.fetch("SELECT v FROM checkpoint_migrations ORDER BY v") == \
            await conn.fetch("SELECT v FROM saver_only.checkpoint_migrations ORDER BY v")
    finally:
        await conn.close()


async def _catalog(conn: Any, schema: str = "public",
                   tables: set[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Columns (type, nullability, default), indexes and constraints of `schema`'s
    tables (all of them, or `tables`), without the schema's name."""
    columns = await conn.fetch(
        """SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                  column_default
             FROM information_schema.columns WHERE table_schema = $1
            ORDER BY table_name, ordinal_position""", schema)
    indexes = await conn.fetch(
        """SELECT tablename, indexname, replace(indexdef, $1, '')
             FROM pg_indexes WHERE schemaname = $2 ORDER BY 1, 2""", f" {schema}.", schema)
    constraints = await conn.fetch(
        """SELECT c.relname, conname, pg_get_constraintdef(k.oid)
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
            WHERE connamespace = $1::regnamespace ORDER BY 1, 2""", schema)
    return {kind: [tuple(r) for r in rows if tables is None or r[0] in tables]
            for kind, rows in (("columns", columns), ("indexes", indexes),
                               ("constraints", constraints))}
