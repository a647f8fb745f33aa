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
and each write is one statement (`statement`): rows go in as arrays through
`unnest`, and what belongs together goes in data-modifying `WITH`s of one
statement (executed to completion though nothing reads them), atomic on its own
as the stock pipeline is between syncs.

A task's writes wait (at most `coalesce_seconds`) for the checkpoint that closes
its step, which LangGraph puts right after the step's last task, and go out in
that checkpoint's statement: a checkpoint, its new blobs and the step's writes
are one round trip. Writes no checkpoint follows soon (an interrupt, a step whose
other tasks still run) go on their own when the wait is over; writes to a delta
channel go at once, since LangGraph waits for them before it puts the checkpoint
(`send_at_once`; `AgentCompiler` names those channels). `aput_writes` returns
only once its writes are stored, as the stock saver's does. What changes is the
moment: a worker that dies within those few milliseconds loses the step's writes
together with its checkpoint, so the step runs again on resume, as it would have
if the worker had died a moment earlier.

Rows, columns, conflict rules and reads are the stock saver's (same tables, same
migrations), so either saver reads what the other wrote; LangGraph's checkpoint
conformance suite runs against this one (tests/integration/test_saver.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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

_BLOBS = """blobs AS (
        INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
        SELECT %s, %s, b.channel, b.version, b.type, b.blob
        FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[])
             AS b(channel, version, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING)"""

_WRITES = """{name} AS (
        INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
                                       task_path, idx, channel, type, blob)
        SELECT %s, %s, %s, w.task_id, w.task_path, w.idx, w.channel, w.type, w.blob
        FROM unnest(%b::text[], %b::text[], %b::integer[], %b::text[], %b::text[],
                    %b::bytea[]) AS w(task_id, task_path, idx, channel, type, blob)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {action})"""

_CHECKPOINT = """
    INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                             checkpoint, metadata)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata"""


@functools.cache
def statement(*, blobs: bool, inserts: bool, upserts: bool, checkpoint: bool) -> str:
    """One statement: the parts asked for as data-modifying `WITH`s (each runs to
    completion though nothing reads it), then the checkpoint (or nothing more)."""
    parts = [_BLOBS] if blobs else []
    if inserts:
        parts.append(_WRITES.format(name="inserted", action="DO NOTHING"))
    if upserts:
        parts.append(_WRITES.format(name="upserted", action=(
            "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, "
            "blob = EXCLUDED.blob")))
    head = "WITH " + ",\n    ".join(parts) if parts else ""
    return head + (_CHECKPOINT if checkpoint else "\n    SELECT 1")


COALESCE_SECONDS = 0.005

# A task's write as stored: task_id, task_path, idx, channel, type, blob.
WriteRow = tuple[str, str, int, str, str, bytes | None]
# Writes are against one checkpoint: thread_id, checkpoint_ns, checkpoint_id.
WritesKey = tuple[str, str, str]


@dataclass
class _PendingWrites:
    """Tasks' writes against one checkpoint, waiting to go out with the next checkpoint
    (its child, which LangGraph puts right after the step's last task) or on their own."""

    done: asyncio.Future[None]
    inserts: list[WriteRow] = field(default_factory=list)
    upserts: list[WriteRow] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None

    def settle(self, error: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            self.done.cancel()
        else:
            self.done.set_exception(error)


def _write_params(key: WritesKey, rows: Sequence[WriteRow]) -> list[Any]:
    return [*key, *([row[i] for row in rows] for i in range(6))]


class PooledPostgresSaver(AsyncPostgresSaver):
    """`AsyncPostgresSaver` on an `AsyncConnectionPool` only (see the module).

    `coalesce_seconds`: how long a task's writes wait for the checkpoint that follows
    them to go out in its statement; 0 sends each call's writes at once."""

    conn: AsyncConnectionPool[Any]

    def __init__(self, pool: AsyncConnectionPool[Any], *,
                 coalesce_seconds: float = COALESCE_SECONDS) -> None:
        if not isinstance(pool, AsyncConnectionPool):
            raise TypeError("PooledPostgresSaver needs an AsyncConnectionPool")
        super().__init__(pool)
        self.coalesce_seconds = coalesce_seconds
        self._pending: dict[WritesKey, _PendingWrites] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        self._at_once: set[str] = set()
        self.writes_sent_alone = 0  # calls' writes that went out without a checkpoint
        self.writes_sent_with_checkpoint = 0

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
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        params: list[Any] = []
        if blob_versions:
            blobs = self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions)
            params += [thread_id, checkpoint_ns, *([b[i] for b in blobs] for i in range(2, 6))]
        # The writes of the step this checkpoint closes, if they are still waiting.
        step: WritesKey = (thread_id, checkpoint_ns, parent_id or "")
        writes = self._pending.pop(step, None) if parent_id else None
        if writes is not None:
            for rows in (writes.inserts, writes.upserts):
                if rows:
                    params += _write_params(step, rows)
        params += [thread_id, checkpoint_ns, checkpoint["id"], parent_id, Jsonb(copy),
                   Jsonb(get_serializable_checkpoint_metadata(config, metadata))]
        sql = statement(blobs=bool(blob_versions),
                        inserts=writes is not None and bool(writes.inserts),
                        upserts=writes is not None and bool(writes.upserts), checkpoint=True)
        try:
            async with self._cursor() as cur:
                await cur.execute(sql, params)
        except BaseException as exc:
            if writes is not None:
                writes.settle(exc)
            raise
        if writes is not None:
            self.writes_sent_with_checkpoint += len(writes.tasks)
            writes.settle(None)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint["id"]}}

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        """Returns once the writes are stored: with the checkpoint that follows them when
        it comes within `coalesce_seconds`, else on their own."""
        if not writes:
            return
        configurable = config["configurable"]
        key: WritesKey = (configurable["thread_id"], configurable["checkpoint_ns"],
                          configurable["checkpoint_id"])
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        dumped = self._dump_writes(*key, task_id, task_path, writes)
        rows = [(task_id, task_path, r[5], r[6], r[7], r[8]) for r in dumped]
        # One statement cannot change a row twice: as the stock saver's row-by-row
        # statements, an upsert keeps the last write to an index, an insert the first.
        by_idx = {row[2]: row for row in (rows if upsert else reversed(rows))}
        rows = list(by_idx.values())
        if key in self._pending and task_id in self._pending[key].tasks:
            await self._flush(key)  # the same task again: its earlier writes go first
        pending = self._pending.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._pending[key] = _PendingWrites(loop.create_future())
            pending.done.add_done_callback(_retrieved)
            if self.coalesce_seconds > 0:
                pending.timer = loop.call_later(self.coalesce_seconds, self._flush_later, key)
        (pending.upserts if upsert else pending.inserts).extend(rows)
        pending.tasks.add(task_id)
        if self.coalesce_seconds <= 0 or not self._at_once.isdisjoint(c for c, _ in writes):
            await self._flush(key)
        await asyncio.shield(pending.done)

    def send_at_once(self, channels: Iterable[str]) -> None:
        """Writes to these channels go out at once, never waiting for a checkpoint:
        LangGraph waits for a delta channel's writes before it puts the checkpoint that
        refers to them (so such writes could only wait out `coalesce_seconds`).
        `AgentCompiler` names each compiled graph's delta channels here."""
        self._at_once |= set(channels)

    def _flush_later(self, key: WritesKey) -> None:
        task = asyncio.ensure_future(self._flush(key))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        task.add_done_callback(_retrieved)

    async def _flush(self, key: WritesKey) -> None:
        """Send the writes waiting against `key` on their own."""
        writes = self._pending.pop(key, None)
        if writes is None:
            return
        params: list[Any] = []
        for rows in (writes.inserts, writes.upserts):
            if rows:
                params += _write_params(key, rows)
        try:
            async with self._cursor() as cur:
                await cur.execute(statement(blobs=False, inserts=bool(writes.inserts),
                                            upserts=bool(writes.upserts), checkpoint=False),
                                  params)
        except BaseException as exc:
            writes.settle(exc)
            raise
        self.writes_sent_alone += len(writes.tasks)
        writes.settle(None)

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


def _retrieved(future: asyncio.Future[None]) -> None:
    """Marks a failure as seen: its waiters get it, or were cancelled and need not."""
    if not future.cancelled():
        future.exception()
