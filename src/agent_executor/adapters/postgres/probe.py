"""`PostgresReadinessProbe`: `/ready`'s check of PostgreSQL, a real query that also
asks whether this version's migrations were applied (CONTRACT section 9)."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_executor.adapters.postgres.pool import DRIVER_ERRORS
from agent_executor.adapters.postgres.schema import missing_migrations
from agent_executor.domain.health import ProbeResult


class PostgresReadinessProbe:
    """Reads `schema_migrations` on the ledger's asyncpg pool within `timeout_seconds`:
    not ready, naming the first missing migration, until every one is applied."""

    name = "postgres"

    def __init__(self, pool: Any, schema: str = "public", *,
                 timeout_seconds: float = 1.0) -> None:
        self._pool = pool
        self._schema = schema
        self._timeout = timeout_seconds

    async def check(self) -> ProbeResult:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.acquire() as conn:
                    missing = await missing_migrations(conn, self._schema)
        except TimeoutError:
            return ProbeResult(ok=False, detail=f"no answer within {self._timeout:g}s")
        except DRIVER_ERRORS as exc:
            return ProbeResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:200])
        if missing:
            return ProbeResult(ok=False, detail=(
                f"schema {self._schema} lacks migration {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + ": run scripts/ci/run-migrations.sh"))
        return ProbeResult(ok=True)
