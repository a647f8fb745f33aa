"""LangGraph checkpoints in PostgreSQL: `AsyncPostgresSaver` on a pool configured here.

The tables come from the migrations (migrations/0002), not from `setup()`.
"""

from __future__ import annotations

from types import TracebackType

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.pool import quote_ident

CheckpointPool = AsyncConnectionPool[AsyncConnection[DictRow]]

MAX_LIFETIME_SECONDS = 30 * 60.0
MAX_IDLE_SECONDS = 5 * 60.0
CONNECTION_WAIT_SECONDS = 10.0


def pool_sizes(max_concurrent_jobs: int) -> tuple[int, int]:
    """(min, max): one connection per running job plus two for reads (`GET /jobs`
    state, resumes); a quarter of them kept open while idle."""
    return max(1, max_concurrent_jobs // 4), max_concurrent_jobs + 2


def create_checkpoint_pool(settings: PostgresSettings, *, max_concurrent_jobs: int,
                           max_lifetime: float = MAX_LIFETIME_SECONDS,
                           max_idle: float = MAX_IDLE_SECONDS,
                           timeout: float = CONNECTION_WAIT_SECONDS) -> CheckpointPool:
    """A closed pool, opened by `PostgresCheckpointStore.open`.

    Connections are checked on checkout (a dead one is replaced, not handed
    out), recycled after `max_lifetime` and dropped after `max_idle`. Prepared
    statements are off (`prepare_threshold=None`) so the pool works behind
    PgBouncer in transaction mode; autocommit and dict rows are what
    AsyncPostgresSaver expects.
    """
    min_size, max_size = pool_sizes(max_concurrent_jobs)
    kwargs: dict[str, object] = {"autocommit": True, "prepare_threshold": None,
                                 "row_factory": dict_row,
                                 "application_name": "agent-executor-checkpoints"}
    if settings.schema != "public":
        # Only when needed: PgBouncer refuses the `options` start-up parameter
        # unless it is listed in ignore_startup_parameters.
        kwargs["options"] = f"-c search_path={_options_value(quote_ident(settings.schema))}"
    return AsyncConnectionPool(
        settings.dsn(), connection_class=AsyncConnection[DictRow], kwargs=kwargs,
        min_size=min_size, max_size=max_size, open=False,
        check=AsyncConnectionPool.check_connection,
        max_lifetime=max_lifetime, max_idle=max_idle, timeout=timeout,
        name="agent-executor-checkpoints",
    )


class PostgresCheckpointStore:
    """Owns the checkpoint pool and the saver on it; `aclose` (or `async with`) closes it."""

    def __init__(self, pool: CheckpointPool) -> None:
        self.pool = pool
        self.saver = AsyncPostgresSaver(pool)

    @classmethod
    async def open(cls, settings: PostgresSettings, *, max_concurrent_jobs: int,
                   max_lifetime: float = MAX_LIFETIME_SECONDS,
                   max_idle: float = MAX_IDLE_SECONDS) -> PostgresCheckpointStore:
        """Opens the pool without waiting for the database: it connects in the
        background, and a checkpoint read or write waits for a connection."""
        pool = create_checkpoint_pool(settings, max_concurrent_jobs=max_concurrent_jobs,
                                      max_lifetime=max_lifetime, max_idle=max_idle)
        await pool.open(wait=False)
        return cls(pool)

    async def aclose(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> PostgresCheckpointStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


def _options_value(value: str) -> str:
    # libpq `options` splits on spaces; a backslash keeps one inside a value.
    return value.replace("\\", "\\\\").replace(" ", "\\ ")
