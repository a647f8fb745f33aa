"""`PooledPostgresSaver` against LangGraph's own checkpoint conformance suite
(`langgraph-checkpoint-conformance`) and against the stock `AsyncPostgresSaver` on the
same migrated tables: either reads what the other wrote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from agent_executor.adapters.postgres.saver import PooledPostgresSaver
from tests.integration.conftest import PostgresDatabase
from tests.integration.test_migrations import migrated

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


@pytest.fixture
async def pool(postgres_db: PostgresDatabase) -> AsyncIterator[Pool]:
    """A pool of 8 on a fresh database migrated as the service's is."""
    await migrated(postgres_db)
    opened: Pool = AsyncConnectionPool(
        postgres_db.dsn, connection_class=AsyncConnection[DictRow], min_size=1, max_size=8,
        open=False, kwargs={"autocommit": True, "prepare_threshold": None,
                            "row_factory": dict_row})
    await opened.open(wait=True, timeout=30)
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_conformance_suite_passes(pool: Pool) -> None:
    @checkpointer_test(name="PooledPostgresSaver")
    async def pooled() -> AsyncIterator[PooledPostgresSaver]:
        yield PooledPostgresSaver(pool)

    report = await validate(pooled)
    detected = {name: r for name, r in report.results.items() if r.detected}
    # put, put_writes, get_tuple, list and delete_thread are the savers' base; the
    # stock saver has prune too.
    assert {"put", "put_writes", "get_tuple", "list", "delete_thread"} <= set(detected)
    failures = {name: r.failures for name, r in detected.items() if not r.passed}
    assert not failures, failures
    assert sum(r.tests_passed for r in detected.values()) > 50


class State(TypedDict):
    steps: list[str]


def _approval_graph(saver: AsyncPostgresSaver) -> Any:
    def ask(state: State) -> dict[str, list[str]]:
        answer = interrupt({"question": "go on?"})
        return {"steps": [*state["steps"], f"asked:{answer}"]}

    builder = StateGraph(State)
    builder.add_node("first", lambda state: {"steps": [*state["steps"], "first"]})
    builder.add_node("ask", ask)
    builder.add_edge(START, "first")
    builder.add_edge("first", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def _same(a: CheckpointTuple | None, b: CheckpointTuple | None) -> None:
    assert a is not None and b is not None
    assert a.config == b.config and a.parent_config == b.parent_config
    assert a.checkpoint == b.checkpoint and a.metadata == b.metadata
    assert a.pending_writes == b.pending_writes


@pytest.mark.parametrize("writer", ["pooled", "stock"])
async def test_either_saver_reads_and_resumes_what_the_other_wrote(
        pool: Pool, writer: str) -> None:
    pooled, stock = PooledPostgresSaver(pool), AsyncPostgresSaver(pool)
    first, second = (pooled, stock) if writer == "pooled" else (stock, pooled)
    config: Any = {"configurable": {"thread_id": f"interop-{uuid.uuid4().hex}"}}
    paused = await _approval_graph(first).ainvoke({"steps": []}, config,
                                                  durability="sync")
    assert "__interrupt__" in paused  # an interrupt write (a special channel) pending
    _same(await first.aget_tuple(config), await second.aget_tuple(config))
    assert ([c.config async for c in first.alist(config)]
            == [c.config async for c in second.alist(config)])
    done = await _approval_graph(second).ainvoke(Command(resume="yes"), config,
                                                 durability="sync")
    assert done["steps"] == ["first", "asked:yes"]


async def test_concurrent_threads_share_the_pool_without_taking_turns(
        pool: Pool) -> None:
    """Each call has a connection of its own: 8 threads' runs overlap on a pool of 8
    (the stock saver's lock would run their statements one at a time)."""
    saver = PooledPostgresSaver(pool)
    graph = _approval_graph(saver)
    configs: list[Any] = [{"configurable": {"thread_id": f"c-{i}-{uuid.uuid4().hex}"}}
                          for i in range(8)]
    await asyncio.gather(*(graph.ainvoke({"steps": []}, c, durability="sync")
                           for c in configs))
    results = await asyncio.gather(*(graph.ainvoke(Command(resume=str(i)), c,
                                                   durability="sync")
                                     for i, c in enumerate(configs)))
    assert [r["steps"] for r in results] == [["first", f"asked:{i}"] for i in range(8)]
    assert not saver.lock.locked()


@pytest.mark.parametrize("saver_class", [PooledPostgresSaver, AsyncPostgresSaver])
async def test_duplicate_special_writes_keep_the_last_and_plain_ones_the_first(
        pool: Pool, saver_class: type[AsyncPostgresSaver]) -> None:
    """As the stock saver's row-by-row statements do: an upsert of a special channel
    twice in one call keeps the last value, a plain insert of one index keeps the first."""
    saver = saver_class(pool)
    config: Any = {"configurable": {"thread_id": f"dup-{uuid.uuid4().hex}",
                                    "checkpoint_ns": ""}}
    stored = await saver.aput(config, empty_checkpoint(), {}, {})
    await saver.aput_writes(stored, [("__error__", "one"), ("__error__", "two")], "t1")
    await saver.aput_writes(stored, [("a", 1)], "t2")
    await saver.aput_writes(stored, [("a", 2)], "t2")
    saved = await saver.aget_tuple(stored)
    assert saved is not None
    assert sorted(saved.pending_writes or []) == [("t1", "__error__", "two"),
                                                  ("t2", "a", 1)]


async def _pending(saver: PooledPostgresSaver, count: int) -> None:
    """Until `count` calls' writes wait in the saver (each call is its own task)."""
    for _ in range(1000):
        if sum(len(p.tasks) for p in saver._pending.values()) >= count:  # noqa: SLF001
            return
        await asyncio.sleep(0)
    raise AssertionError("the writes never reached the saver")


async def test_a_tasks_writes_go_out_in_the_statement_of_the_checkpoint_after_them(
        pool: Pool) -> None:
    saver = PooledPostgresSaver(pool, coalesce_seconds=60)  # only the checkpoint sends
    config: Any = {"configurable": {"thread_id": f"co-{uuid.uuid4().hex}",
                                    "checkpoint_ns": ""}}
    first = await saver.aput(config, empty_checkpoint(), {}, {})
    writes = [asyncio.ensure_future(saver.aput_writes(first, [("a", 1), ("b", "x")], "t1")),
              asyncio.ensure_future(saver.aput_writes(first, [("__error__", "e")], "t2"))]
    await _pending(saver, 2)
    assert not any(w.done() for w in writes)
    second = await saver.aput(first, empty_checkpoint(), {}, {})
    await asyncio.wait_for(asyncio.gather(*writes), 10)
    assert (saver.writes_sent_with_checkpoint, saver.writes_sent_alone) == (2, 0)
    stored = await AsyncPostgresSaver(pool).aget_tuple(first)
    assert stored is not None
    assert sorted(stored.pending_writes or []) == [("t1", "a", 1), ("t1", "b", "x"),
                                                   ("t2", "__error__", "e")]
    assert (await saver.aget_tuple(second)) is not None


async def test_writes_no_checkpoint_follows_are_stored_on_their_own(
        pool: Pool) -> None:
    """An interrupt's writes (the run stops there) and writes to the channels LangGraph
    waits for before its next checkpoint (delta channels) do not wait for one."""
    saver = PooledPostgresSaver(pool, coalesce_seconds=0.05)
    config: Any = {"configurable": {"thread_id": f"alone-{uuid.uuid4().hex}",
                                    "checkpoint_ns": ""}}
    first = await saver.aput(config, empty_checkpoint(), {}, {})
    await asyncio.wait_for(saver.aput_writes(first, [("__interrupt__", "ask")], "t1"), 10)
    assert saver.writes_sent_alone == 1
    waiting = PooledPostgresSaver(pool, coalesce_seconds=3600)
    waiting.send_at_once({"messages"})
    await asyncio.wait_for(waiting.aput_writes(first, [("messages", ["hi"])], "t2"), 10)
    assert waiting.writes_sent_alone == 1
    stored = await saver.aget_tuple(first)
    assert stored is not None
    assert sorted(stored.pending_writes or []) == [("t1", "__interrupt__", "ask"),
                                                   ("t2", "messages", ["hi"])]


async def test_the_same_task_writing_twice_keeps_its_order(
        pool: Pool) -> None:
    saver = PooledPostgresSaver(pool, coalesce_seconds=60)
    config: Any = {"configurable": {"thread_id": f"twice-{uuid.uuid4().hex}",
                                    "checkpoint_ns": ""}}
    first = await saver.aput(config, empty_checkpoint(), {}, {})
    one = asyncio.ensure_future(saver.aput_writes(first, [("__error__", "one")], "t1"))
    await _pending(saver, 1)
    two = asyncio.ensure_future(saver.aput_writes(first, [("__error__", "two")], "t1"))
    await asyncio.wait_for(one, 10)  # sent on its own before the second call's
    await _pending(saver, 1)
    await saver.aput(first, empty_checkpoint(), {}, {})
    await asyncio.wait_for(two, 10)
    stored = await saver.aget_tuple(first)
    assert stored is not None and stored.pending_writes == [("t1", "__error__", "two")]


async def test_a_checkpoint_that_fails_fails_the_writes_that_went_with_it(
        pool: Pool) -> None:
    saver = PooledPostgresSaver(pool, coalesce_seconds=60)
    config: Any = {"configurable": {"thread_id": f"fail-{uuid.uuid4().hex}",
                                    "checkpoint_ns": ""}}
    first = await saver.aput(config, empty_checkpoint(), {}, {})
    writes = asyncio.ensure_future(saver.aput_writes(first, [("a", 1)], "t1"))
    await _pending(saver, 1)
    async with pool.connection() as conn:  # this test's own database
        await conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_away")
    with pytest.raises(psycopg.errors.UndefinedTable):
        await saver.aput(first, empty_checkpoint(), {}, {})
    with pytest.raises(psycopg.errors.UndefinedTable):
        await asyncio.wait_for(writes, 10)
    async with pool.connection() as conn:
        await conn.execute("ALTER TABLE checkpoints_away RENAME TO checkpoints")
        cur = await conn.execute("SELECT count(*) AS n FROM checkpoint_writes")
        assert (await cur.fetchone()) == {"n": 0}  # one statement: nothing half-stored
