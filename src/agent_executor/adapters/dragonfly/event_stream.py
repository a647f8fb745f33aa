"""`DragonflyEventStream`: stream events on `langgraph:stream:{job_id}` (CONTRACT section 7).

Per job, in Dragonfly (any Redis-protocol server):

- the Pub/Sub channel `langgraph:stream:{job_id}`, one JSON event a message;
- the replay buffer `langgraph:stream:{job_id}:events`, a list with a TTL;
- the counter `langgraph:stream:{job_id}:seq`, the last `seq` sent;
- the markers `:end` (the run of its latest `end`) and `:batch` (the last batch
  applied).

Writers are `DragonflyEventWriter`s (buffered, pipelined, never raising; what
they could not send they keep and send when Dragonfly is back). Followers share
one Pub/Sub connection per process (`PubSubFanout`): `subscribe` waits for the
channel's confirmation, then reads the replay buffer, then live messages,
de-duplicating by `seq` and repairing a gap (or a reconnect) from the replay
buffer, so nothing published in between is lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from agent_executor.adapters.config import DragonflySettings
from agent_executor.adapters.dragonfly.fanout import RESYNC, Follower, PubSubFanout
from agent_executor.adapters.dragonfly.writer import (
    APPEND_SCRIPT,
    DRIVER_ERRORS,
    DragonflyEventWriter,
    StreamKeys,
    WriterLimits,
)
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import StreamEvent, ends_run

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "langgraph:stream:"
REPLAY_TTL_SECONDS = 24 * 3600
MAX_CONNECTIONS = 64  # the command pool; followers share one more (Pub/Sub)
REPLAY_READS = 16  # replay buffers read at once (a thousand followers joining at once)
SHUTDOWN_FLUSH_SECONDS = 2.0


class DragonflyEventStream:
    """Implements `EventStream` on one `redis.asyncio.Redis` client (which it owns)."""

    def __init__(self, client: Redis, metrics: PrometheusMetrics, *,
                 replay_ttl_seconds: int = REPLAY_TTL_SECONDS, prefix: str = CHANNEL_PREFIX,
                 max_batch: int = 500, max_buffered: int = 50_000,
                 follower_queue: int = 10_000, subscribe_timeout_seconds: float = 5.0,
                 reconnect_grace_seconds: float = 10.0,
                 linger_seconds: float = 300.0) -> None:
        self._client = client
        self._metrics = metrics
        self._prefix = prefix
        self._limits = WriterLimits(replay_ttl_seconds=replay_ttl_seconds, max_batch=max_batch,
                                    max_buffered=max_buffered, linger_seconds=linger_seconds)
        self._append = client.register_script(APPEND_SCRIPT)
        self._fanout = PubSubFanout(client, queue_size=follower_queue,
                                    subscribe_timeout_seconds=subscribe_timeout_seconds,
                                    reconnect_grace_seconds=reconnect_grace_seconds)
        self._reads = asyncio.Semaphore(REPLAY_READS)
        self._lingering: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: DragonflySettings, metrics: PrometheusMetrics,
                      **options: Any) -> DragonflyEventStream:
        """A stream on a new client; nothing connects until the first command."""
        # Few, quick retries: a flush that cannot reach Dragonfly backs off and tries
        # again later instead of holding back the job. A bounded pool that waits for a
        # free connection instead of failing with "Too many connections".
        pool = BlockingConnectionPool(
            host=settings.host, port=settings.port, db=settings.db,
            password=settings.password, socket_connect_timeout=2.0, socket_timeout=5.0,
            health_check_interval=30, client_name="agent-executor",
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3),
            max_connections=MAX_CONNECTIONS, timeout=5)
        return cls(Redis(connection_pool=pool), metrics, **options)

    def keys(self, job_id: str) -> StreamKeys:
        return StreamKeys.for_job(self._prefix, job_id)

    @property
    def fanout(self) -> PubSubFanout:
        return self._fanout

    async def writer(self, job_id: str, trace_id: str, *, run: int) -> DragonflyEventWriter:
        return DragonflyEventWriter(self._client, self.keys(job_id), job_id, trace_id, run,
                                    self._metrics, self._limits, self._append,
                                    on_linger=self._linger)

    def _linger(self, flusher: asyncio.Task[None]) -> None:
        self._lingering.add(flusher)
        flusher.add_done_callback(self._lingering.discard)

    async def follow(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                     until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """See `EventStream.follow`: ends early (logged) if Dragonfly goes away."""
        try:
            events = await self.subscribe(job_id, after_seq, live=live, until_run=until_run)
            async for event in events:
                yield event
        except DependencyUnavailable as exc:
            logger.warning("following the stream stopped: %s", exc, extra={"job_id": job_id})

    async def subscribe(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                        until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """See `EventStream.subscribe`."""
        keys = self.keys(job_id)
        follower = await self._fanout.subscribe(keys.channel) if live else None
        try:
            replay = await self._replay(keys, after_seq)
            if follower is not None and not replay and await self.has_end(job_id, until_run):
                follower.close()  # its `end` is behind `after_seq`: nothing more will come
                follower = None
        except BaseException:
            if follower is not None:
                follower.close()
            raise
        return _Following(self._follow(keys, after_seq, until_run, replay, follower), follower)

    async def _follow(self, keys: StreamKeys, last: int, until_run: int,
                      replay: list[StreamEvent],
                      follower: Follower | None) -> AsyncIterator[StreamEvent]:
        try:
            batch = replay
            while True:
                for event in batch:
                    if event.seq <= last:
                        continue
                    last = event.seq
                    yield event
                    if ends_run(event, until_run):
                        return
                if follower is None:
                    return
                item = await follower.get()
                if item == RESYNC:
                    batch = await self._replay(keys, last)
                elif isinstance(item, StreamEvent) and item.seq > last + 1:
                    # A message was missed (or came before the replay was read).
                    replayed = await self._replay(keys, last)
                    batch = [e for e in replayed if e.seq < item.seq] + [item]
                elif isinstance(item, StreamEvent):
                    batch = [item]
                else:
                    batch = []
        finally:
            if follower is not None:
                follower.close()

    async def has_end(self, job_id: str, run: int) -> bool:
        keys = self.keys(job_id)
        try:
            ended = await self._client.get(keys.end)
            return ended is not None and int(ended) >= run
        except DRIVER_ERRORS as exc:
            raise DependencyUnavailable(f"Dragonfly: {type(exc).__name__}: {exc}") from exc

    async def _replay(self, keys: StreamKeys, after_seq: int) -> list[StreamEvent]:
        try:
            async with self._reads:
                raw = await self._client.lrange(keys.replay, 0, -1)
        except DRIVER_ERRORS as exc:
            raise DependencyUnavailable(
                f"Dragonfly: the replay buffer cannot be read ({type(exc).__name__}: "
                f"{exc})") from exc
        events = [e for e in map(_decode, raw) if e is not None and e.seq > after_seq]
        return sorted(events, key=lambda e: e.seq)

    async def ping(self) -> None:
        """One PING; raises `DependencyUnavailable` when it fails."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise DependencyUnavailable(f"Dragonfly: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Give lingering writers a last, short chance, then close the connections."""
        if self._lingering:
            await asyncio.wait(set(self._lingering), timeout=SHUTDOWN_FLUSH_SECONDS)
            for task in list(self._lingering):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._fanout.aclose()
        await self._client.aclose()


class _Following:
    """The iterator `subscribe` returns: closes its follower even if never iterated."""

    def __init__(self, events: AsyncIterator[StreamEvent], follower: Follower | None) -> None:
        self._events = events
        self._follower = follower

    def __aiter__(self) -> _Following:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        closer = getattr(self._events, "aclose", None)
        if closer is not None:
            await closer()
        if self._follower is not None:
            self._follower.close()

    def __del__(self) -> None:
        if self._follower is not None:
            with contextlib.suppress(RuntimeError):  # no loop left at interpreter exit
                self._follower.close()


def _decode(raw: Any) -> StreamEvent | None:
    try:
        return StreamEvent.from_data(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        logger.warning("skipping an unreadable stream event: %.200r", raw)
        return None
