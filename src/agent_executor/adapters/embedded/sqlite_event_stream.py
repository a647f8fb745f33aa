"""`SqliteEventStream`: the `local` profile's event stream on disk, beside the ledger.

The same semantics as `DragonflyEventStream`, in a SQLite file
(`events.sqlite3` under AGENT_EXECUTOR_DATA_DIR), so a restart loses nothing:

- `seq` is assigned when a batch is written, from the job's counter in the same
  transaction, so it is 1, 2, ... gapless across writers, restarts and
  processes sharing the file; one `end` per run, the run's last event, and nothing
  more from a writer of a run whose `end` is there (`append` is the one place of
  that rule here; `stream_jobs.ended` holds the run of the latest `end`, 0 for none,
  so a file written before runs existed reads as "run 1 ended").
- Writers buffer like Dragonfly's: `emit` never waits for the disk, a flusher
  task writes what accumulated in one transaction.
- Followers in the process that writes are woken in-process when a batch is
  committed (and read it from a short in-memory tail, not the file). Followers
  of a job written by another process (a second `serve` or an `agent-executor
  run` on the same directory) are woken by one watcher per process that checks
  `PRAGMA data_version` every `poll_seconds` while such followers wait.
- A job's events are removed `replay_ttl_seconds` (24 h) after its last one,
  its counter too (as Dragonfly's keys expire); at most `max_events_per_job`
  (the newest) are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from agent_executor.adapters.embedded.sqlite_event_writer import Pending, SqliteEventWriter
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END, StreamEvent, ends_run
from agent_executor.domain.health import ProbeResult

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.sqlite3"
REPLAY_TTL_SECONDS = 24 * 3600
MAX_EVENTS_PER_JOB = 20_000
TAIL_EVENTS = 1_000  # per locally written job, kept in memory for its followers
PRUNE_EVERY_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_jobs (
    job_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    touched_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_jobs_touched_idx ON stream_jobs (touched_at);
CREATE TABLE IF NOT EXISTS stream_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""
_READ = "SELECT event FROM stream_events WHERE job_id = ? AND seq > ? ORDER BY seq"
_COUNTER = "SELECT last_seq, ended FROM stream_jobs WHERE job_id = ?"
_UPSERT = """
INSERT INTO stream_jobs (job_id, last_seq, ended, touched_at) VALUES (?, ?, ?, ?)
ON CONFLICT (job_id) DO UPDATE SET last_seq = excluded.last_seq, ended = excluded.ended,
                                   touched_at = excluded.touched_at"""
_INSERT = "INSERT INTO stream_events (job_id, seq, event) VALUES (?, ?, ?)"
_TRIM = "DELETE FROM stream_events WHERE job_id = ? AND seq <= ?"
_PRUNE = (
    "DELETE FROM stream_events WHERE job_id IN "
    "(SELECT job_id FROM stream_jobs WHERE touched_at < ?)",
    "DELETE FROM stream_jobs WHERE touched_at < ?",
)

class SqliteEventStream:
    """Implements `EventStream` on one SQLite file; `open` before use."""

    def __init__(self, path: Path, metrics: PrometheusMetrics, *,
                 replay_ttl_seconds: float = REPLAY_TTL_SECONDS,
                 max_events_per_job: int = MAX_EVENTS_PER_JOB, poll_seconds: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._metrics = metrics
        self._ttl = replay_ttl_seconds
        self._max_events = max_events_per_job
        self._poll = poll_seconds
        self._clock = clock
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._signals: dict[str, asyncio.Event] = {}  # replaced (old one set) on change
        self._tails: dict[str, deque[StreamEvent]] = {}
        self._local_writers: Counter[str] = Counter()
        self._remote_waiters = 0
        self._watcher: asyncio.Task[None] | None = None
        self._pruned = 0.0
        self._loss_logged = False

    @classmethod
    async def in_data_dir(cls, data_dir: Path, metrics: PrometheusMetrics,
                          **options: Any) -> SqliteEventStream:
        return await cls(data_dir / EVENTS_FILE, metrics, **options).open()

    async def open(self) -> SqliteEventStream:
        try:
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            self._write = await _connect(self.path)
            await self._write.executescript(_SCHEMA)
            self._read = await _connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            await self.aclose()
            raise DependencyUnavailable(f"event stream ({self.path}) unusable: {exc}") from exc
        await self._prune()
        logger.info("event stream: embedded SQLite at %s", self.path)
        return self

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
            self._watcher = None
        for attr in ("_write", "_read"):
            conn = getattr(self, attr)
            if conn is not None:
                setattr(self, attr, None)
                await conn.close()

    async def writer(self, job_id: str, trace_id: str, *, run: int) -> SqliteEventWriter:
        if self._clock() - self._pruned > PRUNE_EVERY_SECONDS:
            await self._prune()
        self._local_writers[job_id] += 1
        self._tails.setdefault(job_id, deque(maxlen=TAIL_EVENTS))
        return SqliteEventWriter(self, job_id, trace_id, run)

    def writer_closed(self, job_id: str) -> None:
        self._local_writers[job_id] -= 1
        if self._local_writers[job_id] <= 0:
            del self._local_writers[job_id]
            self._tails.pop(job_id, None)
            self._changed(job_id)  # its followers wait on the file from now on

    async def append(self, job_id: str, trace_id: str, run: int,
                     batch: list[Pending]) -> int:
        """Number and write `batch` of run `run` in one transaction; returns how many were
        appended (none once the stream has the `end` of this run or a later one; nothing
        after the batch's `end`)."""
        async with self._write_lock, self._connection("_write") as conn:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                rows = list(await conn.execute_fetchall(_COUNTER, (job_id,)))
                last, ended = (rows[0][0], rows[0][1]) if rows else (0, 0)
                if ended >= run:
                    await conn.execute("ROLLBACK")
                    return 0
                end_at = next((i + 1 for i, e in enumerate(batch) if e[0] == END), len(batch))
                events = [StreamEvent(event_type, job_id, trace_id, last + i + 1, ts, data)
                          for i, (event_type, ts, data) in enumerate(batch[:end_at])]
                await conn.executemany(_INSERT, [
                    (job_id, e.seq, json.dumps(e.to_data(), ensure_ascii=False))
                    for e in events])
                new_last = last + len(events)
                if events[-1].event_type == END:
                    ended = run
                await conn.execute(_UPSERT, (job_id, new_last, ended, self._clock()))
                if new_last > self._max_events:
                    await conn.execute(_TRIM, (job_id, new_last - self._max_events))
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise
        tail = self._tails.get(job_id)
        if tail is not None:
            tail.extend(events)
        self._changed(job_id)
        for event_type, count in Counter(e.event_type for e in events).items():
            self._metrics.stream_events_published_total.labels(event_type=event_type).inc(count)
        if len(events) < len(batch):
            logger.info("the run's stream already ended; %d event(s) after its end dropped",
                        len(batch) - len(events), extra={"job_id": job_id})
        return len(events)

    def lost(self, count: int, exc: BaseException, job_id: str) -> None:
        self._metrics.stream_publish_errors_total.inc(count)
        if not self._loss_logged:
            self._loss_logged = True
            logger.warning("event stream unavailable (%s): events dropped and counted in "
                           "stream_publish_errors_total; the job goes on", exc,
                           extra={"job_id": job_id})

    async def follow(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                     until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """See `EventStream.follow`: ends early (logged) if the file cannot be read."""
        try:
            async for event in await self.subscribe(job_id, after_seq, live=live,
                                                    until_run=until_run):
                yield event
        except DependencyUnavailable as exc:
            logger.warning("following the stream stopped: %s", exc, extra={"job_id": job_id})

    async def subscribe(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                        until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """See `EventStream.subscribe`."""
        signal = self._signal(job_id)  # taken before reading: no commit slips by
        first = await self._events_after(job_id, after_seq)
        if live and not first and await self._ended_before(job_id, after_seq, until_run):
            live = False  # its `end` is behind `after_seq`: nothing more will come
        return self._follow(job_id, after_seq, until_run, first, signal, live)

    async def _follow(self, job_id: str, last: int, until_run: int, batch: list[StreamEvent],
                      signal: asyncio.Event, live: bool) -> AsyncIterator[StreamEvent]:
        while True:
            for event in batch:
                if event.seq <= last:
                    continue
                last = event.seq
                yield event
                if ends_run(event, until_run):
                    return
            if not live:
                return
            newer = self._from_tail(job_id, last)
            if newer is None:
                await self._wait(job_id, signal)
                signal = self._signal(job_id)
                newer = self._from_tail(job_id, last)
            batch = newer if newer is not None else await self._events_after(job_id, last)

    def _from_tail(self, job_id: str, last: int) -> list[StreamEvent] | None:
        """Newer events from memory, when they follow `last` without a gap."""
        tail = self._tails.get(job_id)
        if not tail or tail[-1].seq <= last or tail[0].seq > last + 1:
            return None
        return [e for e in tail if e.seq > last]

    async def _wait(self, job_id: str, signal: asyncio.Event) -> None:
        if self._local_writers[job_id] > 0:
            await signal.wait()  # this process writes the job: woken on each commit
            return
        self._remote_waiters += 1
        try:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch(), name="stream-watcher")
            await signal.wait()
        finally:
            self._remote_waiters -= 1

    async def _watch(self) -> None:
        """While followers wait on jobs written elsewhere: wake them when the file
        changed (another connection committed)."""
        version = None
        while self._remote_waiters > 0:
            try:
                async with self._connection("_read") as conn:
                    rows = list(await conn.execute_fetchall("PRAGMA data_version"))
                current = rows[0][0]
            except DependencyUnavailable:
                current = None
            if current != version or current is None:
                version = current
                for job_id in list(self._signals):
                    self._changed(job_id)
            await asyncio.sleep(self._poll)

    def _signal(self, job_id: str) -> asyncio.Event:
        signal = self._signals.get(job_id)
        if signal is None:
            signal = self._signals[job_id] = asyncio.Event()
        return signal

    def _changed(self, job_id: str) -> None:
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()

    async def _ended_before(self, job_id: str, last: int, run: int) -> bool:
        """The `end` of run `run` (or a later one) is at or before `last`: nothing more
        will come."""
        async with self._connection("_read") as conn:
            rows = list(await conn.execute_fetchall(_COUNTER, (job_id,)))
        return bool(rows and rows[0][1] >= run and rows[0][0] <= last)

    async def has_end(self, job_id: str, run: int) -> bool:
        async with self._connection("_read") as conn:
            rows = list(await conn.execute_fetchall(_COUNTER, (job_id,)))
        return bool(rows and rows[0][1] >= run)

    async def ping(self) -> None:
        async with self._connection("_read") as conn:
            await conn.execute_fetchall("SELECT 1")

    async def _events_after(self, job_id: str, after_seq: int) -> list[StreamEvent]:
        async with self._connection("_read") as conn:
            rows = await conn.execute_fetchall(_READ, (job_id, after_seq))
        return [StreamEvent.from_data(json.loads(row[0])) for row in rows]

    async def _prune(self) -> None:
        self._pruned = self._clock()
        cutoff = self._pruned - self._ttl
        async with self._write_lock, self._connection("_write") as conn:
            for statement in _PRUNE:
                await conn.execute(statement, (cutoff,))

    @contextlib.asynccontextmanager
    async def _connection(self, which: str) -> AsyncIterator[aiosqlite.Connection]:
        """The one place SQLite errors become `DependencyUnavailable`."""
        conn: aiosqlite.Connection | None = getattr(self, which)
        if conn is None:
            raise DependencyUnavailable(f"event stream ({self.path}) is not open")
        try:
            yield conn
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise DependencyUnavailable(f"event stream ({self.path}) failed: {exc}") from exc


class SqliteStreamReadinessProbe:
    """`/ready`'s "dragonfly" check when the stream is the embedded SQLite file."""

    name = "dragonfly"

    def __init__(self, stream: SqliteEventStream) -> None:
        self._stream = stream

    async def check(self) -> ProbeResult:
        try:
            await asyncio.wait_for(self._stream.ping(), timeout=1.0)
        except (DependencyUnavailable, TimeoutError) as exc:
            return ProbeResult(ok=False, embedded=True, detail=str(exc) or "no answer within 1s")
        return ProbeResult(ok=True, embedded=True)


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout = 5000")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    return conn
