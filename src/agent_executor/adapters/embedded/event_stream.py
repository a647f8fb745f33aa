"""`InProcessEventStream`: the event stream in memory, for tests and embedding.

Same semantics as `DragonflyEventStream`, in memory: `seq` gapless per job
across resumes and runs (in this process), one `end` per run, a replay buffer
per job that keeps the last `max_events_per_job` events and is forgotten
`replay_ttl_seconds` after the job's last event, live followers woken on every
event. The `local` profile uses `SqliteEventStream` (events on disk) instead;
this one is for tests and in-process harnesses that need no file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.events import END, StreamEvent, ends_run, utc_timestamp
from agent_executor.domain.health import ProbeResult

REPLAY_TTL_SECONDS = 24 * 3600
MAX_EVENTS_PER_JOB = 20_000


class _JobLog:
    """One job's events; `changed` is replaced (and the old one set) on every event."""

    def __init__(self, max_events: int, now: float) -> None:
        self.events: deque[StreamEvent] = deque(maxlen=max_events)
        self.last_seq = 0
        self.ended_run = 0  # the run of the latest `end` (0: none yet)
        self.touched = now
        self.changed = asyncio.Event()

    def append(self, event: StreamEvent, run: int, now: float) -> None:
        self.events.append(event)
        self.last_seq = event.seq
        if event.event_type == END:
            self.ended_run = run
        self.touched = now
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class InProcessEventWriter:
    def __init__(self, log: _JobLog, job_id: str, trace_id: str, run: int,
                 metrics: PrometheusMetrics, clock: Callable[[], float]) -> None:
        self._log = log
        self._run = run
        self._job_id = job_id
        self._trace_id = trace_id
        self._metrics = metrics
        self._clock = clock
        self.closed = False

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        if self.closed or self._log.ended_run >= self._run:  # one `end` per run, its last
            return
        event = StreamEvent(event_type, self._job_id, self._trace_id, self._log.last_seq + 1,
                            utc_timestamp(), _json_values(data))
        self._log.append(event, self._run, self._clock())
        self._metrics.stream_events_published_total.labels(event_type=event_type).inc()

    async def aclose(self) -> None:
        self.closed = True


class InProcessEventStream:
    """Implements `EventStream` in memory; see the module docstring."""

    def __init__(self, metrics: PrometheusMetrics, *,
                 replay_ttl_seconds: float = REPLAY_TTL_SECONDS,
                 max_events_per_job: int = MAX_EVENTS_PER_JOB,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._ttl = replay_ttl_seconds
        self._max_events = max_events_per_job
        self._clock = clock
        self._jobs: dict[str, _JobLog] = {}
        self._swept = clock()

    async def writer(self, job_id: str, trace_id: str, *, run: int) -> InProcessEventWriter:
        return InProcessEventWriter(self._job(job_id), job_id, trace_id, run, self._metrics,
                                    self._clock)

    async def follow(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                     until_run: int = 1) -> AsyncIterator[StreamEvent]:
        log = self._job(job_id)
        last = after_seq
        if log.ended_run >= until_run and log.last_seq <= last:
            return  # its `end` is behind `after_seq`: nothing more will come
        while True:
            changed = log.changed  # taken before reading, so no event can slip by
            for event in [e for e in log.events if e.seq > last]:
                last = event.seq
                yield event
                if ends_run(event, until_run):
                    return
            if not live:
                return
            if log.last_seq <= last:
                await changed.wait()

    async def subscribe(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                        until_run: int = 1) -> AsyncIterator[StreamEvent]:
        """Nothing here can become unavailable: `follow` itself."""
        return self.follow(job_id, after_seq, live=live, until_run=until_run)

    async def has_end(self, job_id: str, run: int) -> bool:
        return self._job(job_id).ended_run >= run

    def _job(self, job_id: str) -> _JobLog:
        now = self._clock()
        if now - self._swept > min(self._ttl, 60.0):
            self._swept = now
            for stale in [j for j, log in self._jobs.items() if now - log.touched > self._ttl]:
                del self._jobs[stale]
        log = self._jobs.get(job_id)
        if log is None:
            log = self._jobs[job_id] = _JobLog(self._max_events, now)
        return log

    @property
    def jobs(self) -> int:
        return len(self._jobs)


class InProcessReadinessProbe:
    """The in-process bus is always there; `/ready` shows it as embedded."""

    name = "dragonfly"

    async def check(self) -> ProbeResult:
        return ProbeResult(ok=True, embedded=True)


def _json_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy holding JSON values only, exactly what a Dragonfly follower would read."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    except ValueError as exc:
        return {"unserialisable": str(exc)}
    return copied
