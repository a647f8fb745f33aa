"""`DragonflyEventWriter`: one job's events, buffered and pipelined to Dragonfly.

`emit` only serialises the event and appends it to a buffer; a flusher task
per writer sends whatever has accumulated in one round trip: one Lua script
(`APPEND_SCRIPT`: RPUSH to the replay buffer, one PUBLISH per event, the `seq`
counter, TTLs), atomic like MULTI/EXEC but one command instead of one per event.
Tokens that arrive faster than a round trip are therefore batched by
themselves, and a slow or missing Dragonfly never blocks the job.

`seq` is assigned when a batch is sent, from the counter stored next to the
replay buffer, so what reaches Dragonfly is numbered 1, 2, ... without gaps
across resumes and replicas (the ledger lease keeps one writer per job).

A batch that cannot be sent is kept and sent again (with backoff) until
Dragonfly is back: each batch carries an id that the script remembers, so a
retry of a batch that was applied after all (a timeout after the server ran it)
is not appended twice. The counter is read again before the retry (a restarted
Dragonfly may have lost it: seq then goes on from what this writer last sent).
While Dragonfly is unreachable `emit` never waits: past `max_buffered` events
the oldest unsent ones are dropped (counted), never `end`. `aclose` returns as
soon as a send fails; the flusher then goes on in the background for up to
`linger_seconds` (the stream stops it on shutdown), so the job's `end` reaches
the stream once Dragonfly is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
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
# published, then the counter and the TTLs. Every run of a job has one `end`, its
# last event, and the runs end in order: the end marker holds the run of the latest
# `end` (a marker "1" from before runs existed reads as run 1), and a batch of a run
# at or below it appends nothing (so two deliveries of a finished run that both
# repair a missing `end` give one, not two, and a stale writer of a finished run
# never writes into the next one). This script is the one place of that rule for
# Dragonfly. A batch id already applied (the marker holds "id count") is not applied
# again. A batch numbered at or below the counter (a writer whose numbers are stale:
# another writer of the job sent meanwhile) is refused with -1, so no `seq` is ever
# used twice; the writer renumbers it from the counter and sends it again.
# KEYS: replay list, seq counter, end marker, last batch marker (all declared, as
# Dragonfly requires of scripts); ARGV: last seq, TTL, channel, position of `end`
# in the batch (0: none), batch id, the writer's run, events. Returns {events
# appended, counter}. `table.unpack or unpack`: Lua 5.4 (Dragonfly) or 5.1 (Redis).
APPEND_SCRIPT = """
local mark = redis.call('GET', KEYS[4])
if mark and string.sub(mark, 1, #ARGV[5] + 1) == ARGV[5] .. ' ' then
  return {tonumber(string.sub(mark, #ARGV[5] + 2)), tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local ended, run = tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[6])
if ended >= run then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local last, n, end_at = tonumber(ARGV[1]), #ARGV - 6, tonumber(ARGV[4])
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if last - n + 1 <= stored then
  return {-1, stored}
end
if end_at > 0 then
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[2])
  last = last - (n - end_at)
  n = end_at
elseif ended > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
redis.call('RPUSH', KEYS[1], (table.unpack or unpack)(ARGV, 7, 6 + n))
for i = 7, 6 + n do
  redis.call('PUBLISH', ARGV[3], ARGV[i])
end
redis.call('SET', KEYS[2], last, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[4], ARGV[5] .. ' ' .. n, 'EX', ARGV[2])
return {n, last}
"""


@dataclass(frozen=True)
class StreamKeys:
    """Where one job's events live: the channel, the replay list, the `seq` counter, the
    marker holding the run of its latest `end`, and the last batch applied."""

    channel: str
    replay: str
    seq: str
    end: str
    batch: str

    @classmethod
    def for_job(cls, prefix: str, job_id: str) -> StreamKeys:
        channel = f"{prefix}{job_id}"
        return cls(channel=channel, replay=f"{channel}:events", seq=f"{channel}:seq",
                   end=f"{channel}:end", batch=f"{channel}:batch")


@dataclass(frozen=True)
class WriterLimits:
    replay_ttl_seconds: int
    max_batch: int = 500
    max_buffered: int = 50_000
    send_timeout_seconds: float = 5.0
    close_timeout_seconds: float = 10.0
    linger_seconds: float = 300.0
    max_backoff_seconds: float = 2.0


class DragonflyEventWriter:
    """Implements `EventWriter` for one job; see the module docstring."""

    def __init__(self, client: Redis, keys: StreamKeys, job_id: str, trace_id: str,
                 run: int, metrics: PrometheusMetrics, limits: WriterLimits,
                 append: AsyncScript,
                 on_linger: Callable[[asyncio.Task[None]], None] | None = None) -> None:
        self._client = client
        self._keys = keys
        self._run = run
        self._limits = limits
        self._metrics = metrics
        self._log = {"job_id": job_id, "trace_id": trace_id}
        # Every event of the job shares these fields; only type, seq, ts and data differ.
        self._ids = f',"job_id":{json.dumps(job_id)},"trace_id":{json.dumps(trace_id)},"seq":'
        self._pending: list[tuple[str, str, str]] = []  # (event_type, ts, data as JSON)
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._stalled = asyncio.Event()  # set while the last send failed
        self._flusher: asyncio.Task[None] | None = None
        self._append = append  # APPEND_SCRIPT, registered once per client by the stream
        self._on_linger = on_linger
        self._next_seq: int | None = None  # unknown until read from Dragonfly
        self._sent_through = 0  # the last seq this writer knows reached Dragonfly
        self._batch_id = ""  # of the batch at the head of `_pending`, kept across retries
        self._batch_len = 0
        self._closed_at: float | None = None
        self._loss_logged = False
        self.published = 0
        self.lost = 0
        self.batches = 0
        self.retries = 0

    @property
    def _closed(self) -> bool:
        return self._closed_at is not None

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        if self._closed:
            logger.debug("event %s after the writer was closed; dropped", event_type,
                         extra=self._log)
            return
        while len(self._pending) >= self._limits.max_buffered:
            if self._stalled.is_set():
                self._drop_oldest()  # Dragonfly is away: never hold the job back
                break
            self._space.clear()  # backpressure only when a whole buffer is waiting
            self._wake.set()
            await self._space.wait()
        self._pending.append((event_type, utc_timestamp(), _data_json(data)))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(),
                                                name=f"stream-flusher:{self._keys.channel}")
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is buffered, waiting at most `close_timeout_seconds` and not at all
        once a send has failed; what is left is sent in the background (lingering)."""
        if self._closed:
            return
        self._closed_at = time.monotonic()
        flusher = self._flusher
        if flusher is None:
            return
        self._wake.set()
        stalled = asyncio.create_task(self._stalled.wait())
        try:
            await asyncio.wait({flusher, stalled}, timeout=self._limits.close_timeout_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stalled.cancel()
        if not flusher.done():
            logger.info("%d stream event(s) not delivered yet; delivering them when "
                        "Dragonfly answers", len(self._pending), extra=self._log)
            if self._on_linger is not None:
                self._on_linger(flusher)

    async def _flush_forever(self) -> None:
        backoff = 0.05
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    if not self._batch_id:  # a new batch; a retry resends the same events
                        self._batch_id = uuid.uuid4().hex
                        self._batch_len = min(len(self._pending), self._limits.max_batch)
                    batch = self._pending[:self._batch_len]
                    try:
                        sent = await self._send(batch)
                    except Exception as exc:  # a bug here must not break the job
                        logger.exception("stream flusher failed", extra=self._log)
                        self._lose(len(batch), exc)
                        sent = True
                    if sent:
                        del self._pending[:len(batch)]
                        self._batch_id = ""
                        self._stalled.clear()
                        self._space.set()
                        backoff = 0.05
                        continue
                    self._stalled.set()
                    self._space.set()
                    if self._closed_at is not None and (
                            time.monotonic() - self._closed_at > self._limits.linger_seconds):
                        self._lose(len(self._pending), TimeoutError("Dragonfly not back within "
                                   f"{self._limits.linger_seconds:g}s of the job's end"))
                        self._pending.clear()
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._limits.max_backoff_seconds)
                    self.retries += 1
                if self._closed:
                    return
        except asyncio.CancelledError:
            self._lose(len(self._pending), TimeoutError("the stream closed before Dragonfly "
                                                        "took these events"))
            self._pending.clear()
            raise

    async def _send(self, batch: list[tuple[str, str, str]]) -> bool:
        """One attempt; False when Dragonfly could not be reached (keep the batch)."""
        try:
            async with asyncio.timeout(self._limits.send_timeout_seconds):
                if self._next_seq is None:
                    stored = await self._client.get(self._keys.seq)
                    # max(): a restarted, empty Dragonfly must not make seq go back.
                    self._next_seq = max(int(stored or 0), self._sent_through) + 1
                appended = -1
                for _ in range(3):  # renumbered when another writer sent meanwhile
                    first = self._next_seq
                    payloads = [self._payload(first + i, event)
                                for i, event in enumerate(batch)]
                    end_at = next((i + 1 for i, event in enumerate(batch)
                                   if event[0] == END), 0)
                    keys = self._keys
                    appended, counter = (int(v) for v in await self._append(
                        keys=[keys.replay, keys.seq, keys.end, keys.batch],
                        args=[first + len(batch) - 1, self._limits.replay_ttl_seconds,
                              keys.channel, end_at, self._batch_id, self._run, *payloads]))
                    if appended >= 0:
                        break
                    self._next_seq = counter + 1
                if appended < 0:
                    raise TimeoutError("the stream's counter kept moving under this writer")
        except DRIVER_ERRORS as exc:
            self._next_seq = None
            self._warn_once(exc)
            return False
        if appended < len(batch):
            logger.info("the run's stream already ended; %d event(s) after its end dropped",
                        len(batch) - appended, extra=self._log)
            batch = batch[:appended]
        self._sent_through = max(self._sent_through, counter)
        self._next_seq = self._sent_through + 1
        self.published += appended
        self.batches += 1
        for event_type, count in Counter(event[0] for event in batch).items():
            self._metrics.stream_events_published_total.labels(event_type=event_type).inc(count)
        return True

    def _drop_oldest(self) -> None:
        """Make room while Dragonfly is away: drop a batch of the oldest events after the
        one being retried (whose id may already be applied), keeping any `end`."""
        size = self._limits.max_batch
        dropped = [e for e in self._pending[size:2 * size] if e[0] != END]
        kept = [e for e in self._pending[size:2 * size] if e[0] == END]
        self._pending[size:2 * size] = kept
        self._lose(len(dropped), TimeoutError("stream buffer full while Dragonfly is away"))

    def _payload(self, seq: int, event: tuple[str, str, str]) -> str:
        event_type, ts, data = event
        return (f'{{"event_type":{json.dumps(event_type)}{self._ids}{seq},'
                f'"ts":{json.dumps(ts)},"data":{data}}}')

    def _warn_once(self, exc: BaseException) -> None:
        if not self._loss_logged:
            self._loss_logged = True
            logger.warning("Dragonfly unavailable (%s: %s): this job's stream events are kept "
                           "(up to %d) and sent when it is back; the job goes on",
                           type(exc).__name__, exc, self._limits.max_buffered, extra=self._log)

    def _lose(self, count: int, exc: BaseException) -> None:
        if count <= 0:
            return
        self.lost += count
        self._metrics.stream_publish_errors_total.inc(count)
        self._warn_once(exc)
        logger.warning("%d stream event(s) of this job lost (%s); counted in "
                       "stream_publish_errors_total", count, exc, extra=self._log)


def _data_json(data: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(data), default=str, separators=(",", ":"), ensure_ascii=False)
    except ValueError as exc:  # circular reference: keep the event, say why data is missing
        return json.dumps({"unserialisable": str(exc)})
