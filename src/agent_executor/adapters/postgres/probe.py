"""`PostgresReadinessProbe`: `/ready`'s check of PostgreSQL, a real query."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_executor.adapters.postgres.pool import DRIVER_ERRORS
from agent_executor.domain.health import ProbeResult


class PostgresReadinessProbe:
    """Runs `SELECT 1` on the ledger's asyncpg pool within `timeout_seconds`."""

    name = "postgres"

    def __init__(self, pool: Any, *, timeout_seconds: float = 1.0) -> None:
        self._pool = pool
        self._timeout = timeout_seconds

    async def check(self) -> ProbeResult:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            return ProbeResult(ok=False, detail=f"no answer within {self._timeout:g}s")
        except DRIVER_ERRORS as exc:
            return ProbeResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:200])
        return ProbeResult(ok=True)
