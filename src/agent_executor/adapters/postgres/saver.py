"""`PooledPostgresSaver`: LangGraph's `AsyncPostgresSaver` as the service runs it, on a
pool, with each checkpoint write one statement.

The stock saver is written for a single shared connection as much as for a pool,
and pays for that on every write, dozens of times per job:

- an `asyncio.Lock` around every statement, also on a pool, so concurrent jobs
  take turns for the database (with serialisation inside the lock);
- every write serialised in a worker thread (`asyncio.to_thread`): a thread
  hand-off and a GIL switch per checkpoint and per task's writes;
- a checkpoint with its blobs, and a task's writes, sent in pipeline mode, one
  statement per row.

Here a connection comes from the pool per call and nothing else is shared, so no
lock; serialisation runs inline (a few KB per step, cheaper than the hand-off);
a checkpoint and its new blobs are one statement (the blobs in a data-modifying
`WITH`, executed to completion even though the outer `INSERT` does not read it),
and a task's writes are one multi-row `INSERT ... SELECT FROM unnest(...)`. A
single statement is atomic on its own, as the stock pipeline is between syncs.
Rows, columns, conflict rules and reads are the stock saver's (same tables, same
migrations), so either saver reads what the other wrote; LangGraph's checkpoint
conformance suite runs against this one (tests/integration/test_saver_conformance.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

CHECKPOINT_SQL = """
    INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                             checkpoint, metadata)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

CHECKPOINT_WITH_BLOBS_SQL = """
    WITH blobs AS (
        INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
        SELECT %s, %s, b.channel, b.version, b.type, b.blob
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[])
             AS b(channel, version, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
    )
""" + CHECKPOINT_SQL

_WRITES = """
    INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
                                   task_path, idx, channel, type, blob)
    SELECT %s, %s, %s, %s, %s, w.idx, w.channel, w.type, w.blob
    FROM unnest(%s::integer[], %s::text[], %s::text[], %s::bytea[])
         AS w(idx, channel, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""

UPSERT_WRITES_SQL = _WRITES + """
    DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
"""

INSERT_WRITES_SQL = _WRITES + " DO NOTHING"


class PooledPostgresSaver(AsyncPostgresSaver):
    """`AsyncPostgresSaver` on an `AsyncConnectionPool` only (see the module)."""

    conn: AsyncConnectionPool[Any]

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        if not isinstance(pool, AsyncConnectionPool):
            raise TypeError("PooledPostgresSaver needs an AsyncConnectionPool")
        super().__init__(pool)

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        # A connection of its own per call: nothing to take turns for. The writes
        # below are single statements, so `pipeline` needs no pipeline; the stock
        # methods that ask for one (deletes, prunes) get a transaction instead.
        async with self.conn.connection() as conn:
            if pipeline:
                async with conn.transaction(), conn.cursor(binary=True,
                                                           row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        configurable = dict(config["configurable"])
        thread_id = configurable.pop("thread_id")
        checkpoint_ns = configurable.pop("checkpoint_ns")
        parent_id = configurable.pop("checkpoint_id", None)
        copy = checkpoint.copy()
        inline = copy["channel_values"] = dict(copy["channel_values"])
        blob_values: dict[str, Any] = {}
        for key, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blob_values[key] = inline.pop(key)
                inline[key] = True
            elif value is None or isinstance(value, (str, int, float, bool)):
                continue
            else:
                blob_values[key] = inline.pop(key)
        row = (thread_id, checkpoint_ns, checkpoint["id"], parent_id, Jsonb(copy),
               Jsonb(get_serializable_checkpoint_metadata(config, metadata)))
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        async with self._cursor() as cur:
            if blob_versions:
                blobs = self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions)
                await cur.execute(CHECKPOINT_WITH_BLOBS_SQL, (
                    thread_id, checkpoint_ns, [b[2] for b in blobs], [b[3] for b in blobs],
                    [b[4] for b in blobs], [b[5] for b in blobs], *row))
            else:
                await cur.execute(CHECKPOINT_SQL, row)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        if not writes:
            return
        configurable = config["configurable"]
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        rows = self._dump_writes(configurable["thread_id"], configurable["checkpoint_ns"],
                                 configurable["checkpoint_id"], task_id, task_path, writes)
        if upsert:
            # One statement cannot update a row twice: as the stock saver's row-by-row
            # upsert, the last write to a special channel wins.
            rows = list({row[5]: row for row in rows}.values())
        else:
            # `DO NOTHING` keeps the first of two rows with the same index, as the
            # stock saver's row-by-row insert does.
            rows = list({row[5]: row for row in reversed(rows)}.values())[::-1]
        async with self._cursor() as cur:
            await cur.execute(UPSERT_WRITES_SQL if upsert else INSERT_WRITES_SQL, (
                configurable["thread_id"], configurable["checkpoint_ns"],
                configurable["checkpoint_id"], task_id, task_path,
                [r[5] for r in rows], [r[6] for r in rows], [r[7] for r in rows],
                [r[8] for r in rows]))

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        parent = value["parent_checkpoint_id"]
        return CheckpointTuple(
            {"configurable": {"thread_id": value["thread_id"],
                              "checkpoint_ns": value["checkpoint_ns"],
                              "checkpoint_id": value["checkpoint_id"]}},
            cast(Checkpoint, {
                **value["checkpoint"],
                "channel_values": {**(value["checkpoint"].get("channel_values") or {}),
                                   **self._load_blobs(value["channel_values"])}}),
            value["metadata"],
            ({"configurable": {"thread_id": value["thread_id"],
                               "checkpoint_ns": value["checkpoint_ns"],
                               "checkpoint_id": parent}} if parent else None),
            cast(Any, self._load_writes(value["pending_writes"])),
        )
