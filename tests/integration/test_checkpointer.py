"""The checkpoint pool and AsyncPostgresSaver on it, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import asyncpg
from langgraph.graph import END, START, StateGraph
from psycopg_pool import AsyncConnectionPool

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.checkpointer import (
    PostgresCheckpointStore,
    create_checkpoint_pool,
    pool_sizes,
)
from agent_executor.adapters.postgres.pool import quote_ident
from tests.integration.conftest import PostgresDatabase
from tests.integration.test_migrations import migrated


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def _graph(store: PostgresCheckpointStore):  # type: ignore[no-untyped-def]
    builder = StateGraph(State)
    builder.add_node("one", lambda state: {"steps": ["one"]})
    builder.add_node("two", lambda state: {"steps": ["two"]})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", END)
    return builder.compile(checkpointer=store.saver)


def _settings(db: PostgresDatabase, schema: str) -> PostgresSettings:
    return PostgresSettings(host=db.host, port=db.port, database=db.database, user=db.user,
                            password="", schema=schema)


async def _round_trip(db: PostgresDatabase, schema: str) -> None:
    await migrated(db, schema)
    async with await PostgresCheckpointStore.open(_settings(db, schema),
                                                  max_concurrent_jobs=3) as store:
        assert (store.pool.min_size, store.pool.max_size) == pool_sizes(3) == (1, 5)
        graph = _graph(store)
        config = {"configurable": {"thread_id": "job-123"}}
        # More runs than psycopg's default prepare threshold (5): with prepared
        # statements on, this is where a PgBouncer setup would break.
        for _ in range(4):
            await graph.ainvoke({"steps": ["in"]}, config)
        state = await graph.aget_state(config)
        assert state.values["steps"] == ["in", "one", "two"] * 4
        saved = await store.saver.aget_tuple(config)
        assert saved is not None and saved.checkpoint["id"] == state.config[
            "configurable"]["checkpoint_id"]
        history = [c async for c in store.saver.alist(config)]
        assert len(history) == 4 * 4  # per run: the input, START, "one", "two"
        async with store.pool.connection() as conn:
            assert conn.prepare_threshold is None and conn.autocommit
            row = await (await conn.execute("SELECT current_schema() AS s")).fetchone()
            assert row is not None and row["s"] == schema
    assert store.pool.closed
    conn = await asyncpg.connect(db.dsn)
    try:
        threads = await conn.fetchval(
            f"SELECT count(DISTINCT thread_id) FROM {quote_ident(schema)}.checkpoints")
        assert threads == 1
    finally:
        await conn.close()


async def test_saver_round_trips_checkpoints(postgres_db: PostgresDatabase) -> None:
    await _round_trip(postgres_db, "public")


async def test_saver_uses_the_configured_schema(postgres_db: PostgresDatabase) -> None:
    await _round_trip(postgres_db, 'check "points" here')


async def test_a_connection_is_pinged_only_after_sitting_idle_and_a_dead_one_is_replaced(
        postgres_db: PostgresDatabase, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pings: list[int] = []
    real_check = AsyncConnectionPool.check_connection

    async def counting(conn):  # type: ignore[no-untyped-def]
        pings.append(conn.info.backend_pid)
        await real_check(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counting))
    pool = create_checkpoint_pool(_settings(postgres_db, "public"), max_concurrent_jobs=1,
                                  check_after_idle=0.3)
    await pool.open(wait=True)
    try:
        await pool.resize(1, 1)  # one connection, so every checkout takes the same one
        for _ in range(5):  # back to back: pinged once, on the first checkout
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
        assert pings == [pid]
        # After the idle time the next checkout pings it; a backend killed meanwhile
        # is found dead by that ping and replaced before the connection is handed out.
        admin = await asyncpg.connect(postgres_db.dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.4)  # past check_after_idle: the idle time under test
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT 1 AS one")).fetchone()
            assert row is not None and row["one"] == 1
            assert conn.info.backend_pid != pid
        assert pings[:2] == [pid, pid] and len(pings) == 3  # the dead one, then the new one
    finally:
        await pool.close()
