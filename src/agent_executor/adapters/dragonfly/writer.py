"""`DragonflyEventWriter`: one job's events, buffered and pipelined to Dragonfly.

`emit` only serialises the event and appends it to a buffer; a flusher task
per writer sends whatever has accumulated in one round trip: one Lua script
(`APPEND_SCRIPT`: RPUSH to the replay buffer, one PUBLISH per event, the `seq`
counter, TTLs), atomic like MULTI/EXEC but one command instead of one per event.
Tokens that arrive faster than a round trip are therefore batched by
themselves, and a slow or missing Dragonfly never blocks the job.

`seq` is assigned when a batch is sent, from the counter stored next to the
replay buffer, so what reaches Dragonfly is numbered 1, 2, ... without gaps
across resumes and replicas (the ledger lease keeps one writer per job). A
batch that cannot be sent is dropped and counted; the counter is read again
before the next one, because a failed call may or may not have been applied
(and a restarted Dragonfly may have lost it: seq then goes on from what this
writer last sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.events import END, utc_timestamp

logger = logging.getLogger(__name__)

# What a flush can raise when Dragonfly is down, slow or restarting.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


# One round trip and one command per batch, applied atomically (all or nothing, so
# `seq` never moves without its events): the events onto the replay buffer, each
# published, then the counter and the TTLs. `end` is the last event of a job's
# stream, once: the end marker is set with it, and nothing is appended once it is
# there (so two deliveries of a finished job that both repair a missing `end`
# give one, not two). KEYS: replay list, seq counter, end marker (all declared,
# as Dragonfly requires of scripts); ARGV: last seq, TTL, channel, position of
# `end` in the batch (0: none), events. Returns how many events were appended.
# `table.unpack or unpack`: Lua 5.4 (Dragonfly) or 5.1 (Redis).
APPEND_SCRIPT = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local last, n, end_at = tonumber(ARGV[1]), #ARGV - 4, tonumber(ARGV[4])
if end_at > 0 then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
  last = last - (n - end_at)
  n = end_at
end
redis.call('RPUSH', KEYS[1], (table.unpack or unpack)(ARGV, 5, 4 + n))
for i = 5, 4 + n do
  redis.call('PUBLISH', ARGV[3], ARGV[i])
end
redis.call('SET', KEYS[2], last, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""


@dataclass(frozen=True)
class StreamKeys:
    """Where one job's events live: the channel, the replay list, the `seq` counter and
    the marker that its `end` was sent."""

    channel: str
    replay: str
    seq: str
    end: str

    @classmethod
    def for_job(cls, prefix: str, job_id: str) -> StreamKeys:
        channel = f"{prefix}{job_id}"
        return cls(channel=channel, replay=f"{channel}:events", seq=f"{channel}:seq",
                   end=f"{channel}:end")


@dataclass(frozen=True)
class WriterLimits:
    replay_ttl_seconds: int
    max_batch: int = 500
    max_buffered: int = 50_000
    send_timeout_seconds: float = 5.0
    close_timeout_seconds: float = 10.0


class DragonflyEventWriter:
    """Implements `EventWriter` for one job; see the module docstring."""

    def __init__(self, client: Redis, keys: StreamKeys, job_id: str, trace_id: str,
                 metrics: PrometheusMetrics, limits: WriterLimits,
                 append: AsyncScript) -> None:
        self._client = client
        self._keys = keys
        self._limits = limits
        self._metrics = metrics
        self._log = {"job_id": job_id, "trace_id": trace_id}
        # Every event of the job shares these fields; only type, seq, ts and data differ.
        self._ids = f',"job_id":{json.dumps(job_id)},"trace_id":{json.dumps(trace_id)},"seq":'
        self._pending: list[tuple[str, str, str]] = []  # (event_type, ts, data as JSON)
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._flusher: asyncio.Task[None] | None = None
        self._append = append  # APPEND_SCRIPT, registered once per client by the stream
        self._next_seq: int | None = None  # unknown until read from Dragonfly
        self._sent_through = 0  # the last seq this writer knows reached Dragonfly
        self._sending = 0
        self._closed = False
        self._loss_logged = False
        self.published = 0
        self.lost = 0
        self.batches = 0

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        if self._closed:
            logger.debug("event %s after the writer was closed; dropped", event_type,
                         extra=self._log)
            return
        while len(self._pending) >= self._limits.max_buffered:
            self._space.clear()  # backpressure only when a whole buffer is waiting
            self._wake.set()
            await self._space.wait()
        self._pending.append((event_type, utc_timestamp(), _data_json(data)))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(),
                                                name=f"stream-flusher:{self._keys.channel}")
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is buffered (bounded by `close_timeout_seconds`), then stop."""
        if self._closed:
            return
        self._closed = True
        flusher = self._flusher
        if flusher is None:
            return
        self._wake.set()
        try:
            async with asyncio.timeout(self._limits.close_timeout_seconds):
                await asyncio.shield(flusher)
        except TimeoutError:
            flusher.cancel()
            with contextlib.suppress(BaseException):
                await flusher
            self._lose(len(self._pending) + self._sending,
                       TimeoutError("stream events not flushed before the writer closed"))
            self._pending.clear()

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:self._limits.max_batch]
                del self._pending[:self._limits.max_batch]
                self._space.set()
                self._sending = len(batch)
                try:
                    await self._send(batch)
                except Exception as exc:  # a bug here must not break the job
                    logger.exception("stream flusher failed", extra=self._log)
                    self._lose(len(batch), exc)
                self._sending = 0
            if self._closed:
                return

    async def _send(self, batch: list[tuple[str, str, str]]) -> None:
        try:
            async with asyncio.timeout(self._limits.send_timeout_seconds):
                if self._next_seq is None:
                    stored = await self._client.get(self._keys.seq)
                    # max(): a restarted, empty Dragonfly must not make seq go back.
                    self._next_seq = max(int(stored or 0), self._sent_through) + 1
                first = self._next_seq
                payloads = [self._payload(first + i, event) for i, event in enumerate(batch)]
                end_at = next((i + 1 for i, event in enumerate(batch) if event[0] == END), 0)
                appended = int(await self._append(
                    keys=[self._keys.replay, self._keys.seq, self._keys.end],
                    args=[first + len(batch) - 1, self._limits.replay_ttl_seconds,
                          self._keys.channel, end_at, *payloads]))
        except DRIVER_ERRORS as exc:
            self._next_seq = None
            self._lose(len(batch), exc)
            return
        if appended < len(batch):
            logger.info("the job's stream already ended; %d event(s) after its end dropped",
                        len(batch) - appended, extra=self._log)
            batch = batch[:appended]
        self._next_seq = first + appended
        self._sent_through = first + appended - 1
        self.published += appended
        self.batches += 1
        for event_type, count in Counter(event[0] for event in batch).items():
            self._metrics.stream_events_published_total.labels(event_type=event_type).inc(count)

    def _payload(self, seq: int, event: tuple[str, str, str]) -> str:
        event_type, ts, data = event
        return (f'{{"event_type":{json.dumps(event_type)}{self._ids}{seq},'
                f'"ts":{json.dumps(ts)},"data":{data}}}')

    def _lose(self, count: int, exc: BaseException) -> None:
        if count <= 0:
            return
        self.lost += count
        self._metrics.stream_publish_errors_total.inc(count)
        if not self._loss_logged:
            self._loss_logged = True
            logger.warning("Dragonfly unavailable (%s: %s): live stream events of this job are "
                           "dropped and counted in stream_publish_errors_total; the job goes on",
                           type(exc).__name__, exc, extra=self._log)


def _data_json(data: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(data), default=str, separators=(",", ":"), ensure_ascii=False)
    except ValueError as exc:  # circular reference: keep the event, say why data is missing
        return json.dumps({"unserialisable": str(exc)})
