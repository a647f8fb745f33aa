"""The schema this version needs: the migrations `scripts/ci/run-migrations.sh` must
have applied (recorded in `schema_migrations`) before a pod takes a job."""

from __future__ import annotations

from typing import Any

from agent_executor.adapters.postgres.pool import quote_ident

# Every file of migrations/, in order (a test keeps this list and the folder equal).
REQUIRED_MIGRATIONS: tuple[str, ...] = (
    "0001_job_ledger.sql",
    "0002_langgraph_checkpoints.sql",
    "0003_result_outbox.sql",
    "0004_job_list_index.sql",
    "0005_job_lifecycle.sql",
    "0006_steering.sql",
)


async def missing_migrations(conn: Any, schema: str) -> list[str]:
    """The required migrations not recorded as applied in `schema`; all of them when
    the migrations never ran (no `schema_migrations` table)."""
    table = f"{quote_ident(schema)}.schema_migrations"
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if not exists:
        return list(REQUIRED_MIGRATIONS)
    applied = {row["filename"] for row in await conn.fetch(f"SELECT filename FROM {table}")}
    return [name for name in REQUIRED_MIGRATIONS if name not in applied]
