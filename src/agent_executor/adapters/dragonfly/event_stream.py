"""`DragonflyEventStream`: stream events on `langgraph:stream:{job_id}` (CONTRACT section 7).

Per job, three things in Dragonfly (any Redis-protocol server):

- the Pub/Sub channel `langgraph:stream:{job_id}`, one JSON event a message;
- the replay buffer `langgraph:stream:{job_id}:events`, a list with a TTL;
- the counter `langgraph:stream:{job_id}:seq`, the last `seq` sent.

Writers are `DragonflyEventWriter`s (buffered, pipelined, never raising).
`follow` subscribes first, then reads the replay buffer, then live messages,
de-duplicating by `seq`, so nothing published in between is lost or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from agent_executor.adapters.config import DragonflySettings
from agent_executor.adapters.dragonfly.writer import (
    APPEND_SCRIPT,
    DRIVER_ERRORS,
    DragonflyEventWriter,
    StreamKeys,
    WriterLimits,
)
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END, StreamEvent

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "langgraph:stream:"
REPLAY_TTL_SECONDS = 24 * 3600
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


class DragonflyEventStream:
    """Implements `EventStream` on one `redis.asyncio.Redis` client (which it owns)."""

    def __init__(self, client: Redis, metrics: PrometheusMetrics, *,
                 replay_ttl_seconds: int = REPLAY_TTL_SECONDS, prefix: str = CHANNEL_PREFIX,
                 max_batch: int = 500, max_buffered: int = 50_000,
                 poll_seconds: float = 1.0) -> None:
        self._client = client
        self._metrics = metrics
        self._prefix = prefix
        self._poll_seconds = poll_seconds
        self._limits = WriterLimits(replay_ttl_seconds=replay_ttl_seconds, max_batch=max_batch,
                                    max_buffered=max_buffered)
        self._append = client.register_script(APPEND_SCRIPT)

    @classmethod
    def from_settings(cls, settings: DragonflySettings, metrics: PrometheusMetrics,
                      **options: Any) -> DragonflyEventStream:
        """A stream on a new client; nothing connects until the first command."""
        # Few, quick retries: a flush that cannot reach Dragonfly gives up its batch
        # within a fraction of a second instead of holding back the next one.
        client = Redis(host=settings.host, port=settings.port, db=settings.db,
                       password=settings.password, socket_connect_timeout=2.0,
                       socket_timeout=5.0, health_check_interval=30,
                       retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3),
                       client_name="agent-executor")
        return cls(client, metrics, **options)

    def keys(self, job_id: str) -> StreamKeys:
        return StreamKeys.for_job(self._prefix, job_id)

    async def writer(self, job_id: str, trace_id: str) -> DragonflyEventWriter:
        return DragonflyEventWriter(self._client, self.keys(job_id), job_id, trace_id,
                                    self._metrics, self._limits, self._append)

    async def has_end(self, job_id: str) -> bool:
        try:
            return bool(await self._client.exists(self.keys(job_id).end))
        except DRIVER_ERRORS as exc:
            raise DependencyUnavailable(f"Dragonfly: {type(exc).__name__}: {exc}") from exc

    async def follow(self, job_id: str, after_seq: int = 0, *,
                     live: bool = True) -> AsyncIterator[StreamEvent]:
        """See `EventStream.follow`. Ends early (logged) if Dragonfly goes away; a client
        resumes with the last `seq` it saw."""
        keys = self.keys(job_id)
        last = after_seq
        pubsub: PubSub | None = None
        try:
            if live:
                pubsub = self._client.pubsub()
                await _subscribe(pubsub, keys.channel)
            for event in await self._replay(keys, last):
                last = event.seq
                yield event
                if event.event_type == END:
                    return
            while pubsub is not None:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=self._poll_seconds)
                live_event = _decode(message["data"]) if message else None
                if live_event is None or live_event.seq <= last:
                    continue
                batch = [live_event]
                if live_event.seq > last + 1:  # a message was missed (subscriber dropped)
                    replayed = await self._replay(keys, last)
                    batch = [e for e in replayed if e.seq < live_event.seq] + batch
                for item in batch:
                    last = item.seq
                    yield item
                    if item.event_type == END:
                        return
        except DRIVER_ERRORS as exc:
            logger.warning("following the stream stopped: Dragonfly unavailable (%s: %s)",
                           type(exc).__name__, exc, extra={"job_id": job_id})
        finally:
            if pubsub is not None:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _replay(self, keys: StreamKeys, after_seq: int) -> list[StreamEvent]:
        raw = await self._client.lrange(keys.replay, 0, -1)
        events = [e for e in map(_decode, raw) if e is not None and e.seq > after_seq]
        return sorted(events, key=lambda e: e.seq)

    async def ping(self) -> None:
        """One PING; raises `DependencyUnavailable` when it fails."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise DependencyUnavailable(f"Dragonfly: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


async def _subscribe(pubsub: PubSub, channel: str) -> None:
    """Subscribe and wait for the server's confirmation, so that reading the replay
    buffer afterwards cannot miss an event published in between."""
    await pubsub.subscribe(channel)
    async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
        while True:
            message = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT_SECONDS)
            if message is not None and message["type"] == "subscribe":
                return


def _decode(raw: Any) -> StreamEvent | None:
    try:
        return StreamEvent.from_data(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        logger.warning("skipping an unreadable stream event: %.200r", raw)
        return None
