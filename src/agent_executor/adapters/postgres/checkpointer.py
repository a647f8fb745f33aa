"""LangGraph checkpoints in PostgreSQL: `PooledPostgresSaver` (saver.py: LangGraph's
`AsyncPostgresSaver` without its single-connection costs) on a pool configured here.

The tables come from the migrations (migrations/0002), not from `setup()`.
"""

from __future__ import annotations

import time
import weakref
from types import TracebackType

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.pool import quote_ident
from agent_executor.adapters.postgres.saver import PooledPostgresSaver

CheckpointPool = AsyncConnectionPool[AsyncConnection[DictRow]]

MAX_LIFETIME_SECONDS = 30 * 60.0
MAX_IDLE_SECONDS = 5 * 60.0
CONNECTION_WAIT_SECONDS = 10.0
CHECK_AFTER_IDLE_SECONDS = 2.0


def pool_sizes(max_concurrent_jobs: int) -> tuple[int, int]:
    """(min, max): one connection per running job plus two for reads (`GET /jobs`
    state, resumes); a quarter of them kept open while idle."""
    return max(1, max_concurrent_jobs // 4), max_concurrent_jobs + 2


def create_checkpoint_pool(settings: PostgresSettings, *, max_concurrent_jobs: int,
                           max_lifetime: float = MAX_LIFETIME_SECONDS,
                           max_idle: float = MAX_IDLE_SECONDS,
                           timeout: float = CONNECTION_WAIT_SECONDS,
                           check_after_idle: float = CHECK_AFTER_IDLE_SECONDS) -> CheckpointPool:
    """A closed pool, opened by `PostgresCheckpointStore.open`.

    A connection last checked out more than `check_after_idle` seconds ago is
    checked on checkout (a dead one is replaced, not handed out; see `IdleCheck`),
    recycled after `max_lifetime` and dropped after `max_idle`. Prepared
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
    idle = IdleCheck(check_after_idle)
    return AsyncConnectionPool(
        settings.dsn(), connection_class=AsyncConnection[DictRow], kwargs=kwargs,
        min_size=min_size, max_size=max_size, open=False,
        check=idle.check,
        max_lifetime=max_lifetime, max_idle=max_idle, timeout=timeout,
        name="agent-executor-checkpoints",
    )


class IdleCheck:
    """The pool's `check` callback: a connection is pinged on checkout only when its
    previous checkout was more than `after_seconds` ago (so it may have sat idle
    long enough for a restart or a dropped socket to break it unnoticed). One
    used moments ago is handed out as is: the saver checks a connection out for
    every checkpoint read and write, dozens per job, and a ping each time doubled
    the round trips. A connection that breaks in use is discarded by the pool on
    its return.

    Timed from the checkout, not the return: a `reset` callback would tell the
    return, but psycopg_pool then hands every returned connection to its worker
    task instead of putting it back at once (a task switch per checkpoint write,
    and the connection unavailable meanwhile)."""

    def __init__(self, after_seconds: float = CHECK_AFTER_IDLE_SECONDS) -> None:
        self.after_seconds = after_seconds
        self._checked_out_at: weakref.WeakKeyDictionary[AsyncConnection[DictRow], float] = (
            weakref.WeakKeyDictionary())

    async def check(self, conn: AsyncConnection[DictRow]) -> None:
        now = time.monotonic()
        previous = self._checked_out_at.get(conn)
        if previous is None or now - previous > self.after_seconds:
            await AsyncConnectionPool.check_connection(conn)
        self._checked_out_at[conn] = now


class PostgresCheckpointStore:
    """Owns the checkpoint pool and the saver on it; `aclose` (or `async with`) closes it."""

    def __init__(self, pool: CheckpointPool) -> None:
        self.pool = pool
        self.saver = PooledPostgresSaver(pool)

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
