"""The small asyncpg pool the ledger, the readiness probe and `prune` share."""

from __future__ import annotations

import json
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from agent_executor.adapters.config import PostgresSettings

# Errors of the driver and the network that mean "the database is not usable now".
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    OSError, TimeoutError,
)


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted (POSTGRES_SCHEMA may hold any character)."""
    return '"' + name.replace('"', '""') + '"'


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def create_pool(settings: PostgresSettings, *, max_size: int = 4, min_size: int = 0,
                      connect_timeout: float = 5.0, command_timeout: float = 10.0) -> Any:
    """An asyncpg pool; with `min_size=0` it connects lazily, so start-up does not
    depend on the database being up (readiness reports it instead).

    The statement cache is off: asyncpg then uses unnamed prepared statements,
    which work behind PgBouncer in transaction mode.
    """
    return await asyncpg.create_pool(
        host=settings.host, port=settings.port, database=settings.database,
        user=settings.user, password=settings.password or None,
        min_size=min_size, max_size=max_size, max_inactive_connection_lifetime=300.0,
        timeout=connect_timeout, command_timeout=command_timeout,
        statement_cache_size=0, init=_init_connection,
        server_settings={"application_name": "agent-executor"},
    )
