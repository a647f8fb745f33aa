"""`PubSubFanout`: one Pub/Sub connection per process, fanned out to every follower.

A follower asks for a channel; the first follower of a channel sends `SUBSCRIBE`,
the last one to leave sends `UNSUBSCRIBE`; a reader task reads the one connection
and puts each event into the bounded queue of every follower of its channel.

- `subscribe` returns only once the server has confirmed the channel's
  subscription, so a replay buffer read afterwards cannot miss an event
  published in between. Confirmations are matched to the `SUBSCRIBE` that asked
  for them in order (a FIFO per channel), never to a later one.
- The connection lost: the reader reconnects with backoff and subscribes every
  channel again; each follower gets `LOST` at once and `RESYNC` when its channel
  is confirmed again (it then reads the replay buffer for what it missed). A
  follower that sees no `RESYNC` within `reconnect_grace_seconds` gives up
  (`DependencyUnavailable`), as does one whose queue overflows.
- While the connection is down, a new `subscribe` makes the reader try again at
  once (not after its backoff) and fails as soon as that attempt does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent_executor.adapters.dragonfly.writer import DRIVER_ERRORS
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import StreamEvent

logger = logging.getLogger(__name__)

RESYNC = "resync"  # read the replay buffer: messages may have been missed
LOST = "lost"  # the connection is gone; a RESYNC follows if it comes back in time
_OVERFLOW = "overflow"
_CLOSED = "closed"


@dataclass(eq=False)
class _Channel:
    name: str
    followers: set[Follower] = field(default_factory=set)
    confirmed: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    generation: int = -1  # the connection its SUBSCRIBE was last sent on


class Follower:
    """One follower's view of its channel: events, `RESYNC` and `LOST`, in order."""

    def __init__(self, fanout: PubSubFanout, channel: _Channel, queue_size: int) -> None:
        self._fanout = fanout
        self._channel = channel
        self._queue: asyncio.Queue[StreamEvent | str] = asyncio.Queue(maxsize=queue_size)
        self._closed = False

    def put(self, item: StreamEvent | str) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_OVERFLOW)

    async def get(self) -> StreamEvent | str:
        """The next event or `RESYNC`; raises `DependencyUnavailable` when the follower
        cannot be served any longer."""
        item = await self._queue.get()
        if item == LOST:
            grace = self._fanout.reconnect_grace_seconds
            try:
                async with asyncio.timeout(grace):
                    while item == LOST:
                        item = await self._queue.get()
            except TimeoutError:
                raise DependencyUnavailable(
                    f"Dragonfly: the stream connection was lost and not back within "
                    f"{grace:g}s") from None
        if item == _OVERFLOW:
            raise DependencyUnavailable(
                f"the follower fell more than {self._queue.maxsize} events behind")
        if item == _CLOSED:
            raise DependencyUnavailable("the event stream is closing")
        return item

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fanout.leave(self._channel, self)


class PubSubFanout:
    """See the module docstring. `aclose` stops the reader and its connection."""

    def __init__(self, client: Redis, *, queue_size: int = 10_000,
                 subscribe_timeout_seconds: float = 5.0,
                 reconnect_grace_seconds: float = 10.0,
                 max_backoff_seconds: float = 2.0) -> None:
        kwargs = dict(client.connection_pool.connection_kwargs)
        # Errors must reach the reader (which resubscribes and tells followers),
        # not be retried away inside redis-py (which resubscribes silently).
        kwargs["retry"] = Retry(NoBackoff(), 0)
        self._pool = ConnectionPool(connection_class=client.connection_pool.connection_class,
                                    max_connections=2, **kwargs)
        self._client = Redis(connection_pool=self._pool)
        self.queue_size = queue_size
        self.subscribe_timeout_seconds = subscribe_timeout_seconds
        self.reconnect_grace_seconds = reconnect_grace_seconds
        self._max_backoff = max_backoff_seconds
        self._sentinel = f"agent-executor:fanout:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._channels: dict[str, _Channel] = {}
        self._expect: dict[str, deque[_Channel]] = {}  # SUBSCRIBEs not yet confirmed
        self._pubsub: PubSub | None = None
        self._generation = 0
        self._state = "idle"  # idle -> connecting -> up | down -> connecting ...
        self._state_changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._retry_now = asyncio.Event()  # a new follower while down: reconnect at once
        self._reader: asyncio.Task[None] | None = None
        self._last_error = ""
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._state == "up"

    @property
    def channels(self) -> list[str]:
        """Channels with followers in this process."""
        return list(self._channels)

    async def subscribe(self, channel_name: str) -> Follower:
        """A follower of `channel_name`, subscribed and confirmed; raises
        `DependencyUnavailable` when Dragonfly cannot confirm it in time."""
        if self._reader is None:
            self._state = "connecting"
            self._reader = asyncio.create_task(self._read_forever(), name="stream-fanout")
        channel = self._channels.get(channel_name)
        if channel is None:
            channel = self._channels[channel_name] = _Channel(channel_name)
        follower = Follower(self, channel, self.queue_size)
        channel.followers.add(follower)
        try:
            async with asyncio.timeout(self.subscribe_timeout_seconds):
                if self._state == "down":  # try now, not after the backoff: it may be back
                    self._retry_now.set()
                    while self._state == "down":
                        await self._wait_state()
                while self._state == "connecting":
                    await self._wait_state()
                if self._state != "up":
                    raise DependencyUnavailable(f"Dragonfly unavailable: {self._last_error}")
                await self._send_subscribe(channel)
                await asyncio.shield(channel.confirmed)
        except TimeoutError:
            follower.close()
            raise DependencyUnavailable(
                f"Dragonfly did not confirm the subscription within "
                f"{self.subscribe_timeout_seconds:g}s") from None
        except BaseException:
            follower.close()
            raise
        return follower

    def leave(self, channel: _Channel, follower: Follower) -> None:
        channel.followers.discard(follower)
        if not channel.followers and self._channels.get(channel.name) is channel:
            del self._channels[channel.name]
            if not channel.confirmed.done():
                channel.confirmed.cancel()
            if self._state == "up" and channel.generation == self._generation:
                # Sent in order with later SUBSCRIBEs of the same name (one lock).
                asyncio.get_running_loop().create_task(self._send_unsubscribe(channel.name))

    async def _wait_state(self) -> None:
        await self._state_changed.wait()

    def _set_state(self, state: str) -> None:
        self._state = state
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()

    async def _send_subscribe(self, channel: _Channel) -> None:
        async with self._send_lock:
            pubsub = self._pubsub
            if channel.generation == self._generation or pubsub is None:
                return  # sent on this connection already (or the reader will send it)
            channel.generation = self._generation
            self._expect.setdefault(channel.name, deque()).append(channel)
            try:
                await pubsub.subscribe(channel.name)
            except DRIVER_ERRORS as exc:
                raise DependencyUnavailable(f"Dragonfly: {type(exc).__name__}: {exc}") from exc

    async def _send_unsubscribe(self, name: str) -> None:
        async with self._send_lock:
            if name in self._channels or self._pubsub is None:
                return
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._pubsub.unsubscribe(name)

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                async with self._send_lock:
                    self._generation += 1
                    self._expect.clear()
                    channels = list(self._channels.values())
                    for channel in channels:
                        channel.generation = self._generation
                        self._expect.setdefault(channel.name, deque()).append(channel)
                    await pubsub.subscribe(self._sentinel, *(c.name for c in channels))
                    self._pubsub = pubsub
                self._set_state("up")
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except DRIVER_ERRORS as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                if self._state == "up":
                    logger.warning("the stream's Pub/Sub connection was lost (%s); "
                                   "reconnecting", self._last_error)
                    self.reconnects += 1
            finally:
                self._pubsub = None
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            self._connection_lost()
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)
            self._set_state("connecting")

    def _connection_lost(self) -> None:
        self._set_state("down")
        for channel in list(self._channels.values()):
            if not channel.confirmed.done():
                channel.confirmed.set_exception(
                    DependencyUnavailable(f"Dragonfly unavailable: {self._last_error}"))
                channel.confirmed.exception()  # retrieved: no "never retrieved" warning
                channel.confirmed = asyncio.get_running_loop().create_future()
            else:
                for follower in channel.followers:
                    follower.put(LOST)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        name = _text(message["channel"])
        if kind == "message":
            channel = self._channels.get(name)
            if channel is None:
                return
            event = _decode(message["data"])
            if event is not None:
                for follower in channel.followers:
                    follower.put(event)
        elif kind == "subscribe":
            expected = self._expect.get(name)
            channel = expected.popleft() if expected else self._channels.get(name)
            if channel is None or self._channels.get(name) is not channel:
                return  # its followers left before the confirmation came
            if not channel.confirmed.done():
                channel.confirmed.set_result(None)  # its followers read the replay next
            else:
                for follower in channel.followers:  # subscribed again after a reconnect
                    follower.put(RESYNC)

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        for channel in list(self._channels.values()):
            for follower in list(channel.followers):
                follower.put(_CLOSED)
        await self._client.aclose()
        await self._pool.disconnect()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: Any) -> StreamEvent | None:
    try:
        return StreamEvent.from_data(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        logger.warning("skipping an unreadable stream event: %.200r", raw)
        return None
