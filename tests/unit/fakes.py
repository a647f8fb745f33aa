"""Hand-written fakes of every port: they keep state that tests assert on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agent_executor.domain.errors import (
    DependencyUnavailable,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    LeaseLost,
    WrongJobState,
)
from agent_executor.domain.events import END, StreamEvent, ends_run, utc_timestamp
from agent_executor.domain.fingerprint import fingerprint, mismatch_message
from agent_executor.domain.health import ProbeResult
from agent_executor.domain.interrupts import Interrupt, Resume
from agent_executor.domain.job import Job
from agent_executor.domain.listing import JobPage, JobQuery, encode_cursor, time_cursor
from agent_executor.domain.result import AgentOutput, JobRecord, JobResult
from agent_executor.domain.usage import Usage
from agent_executor.ports.runtime import EventSink


class FakeLedger:
    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.jobs: dict[str, Job] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.outcome_at: dict[str, datetime] = {}  # when the held result was recorded
        self.published: set[str] = set()  # jobs whose held result went out
        self.fingerprints: dict[str, str] = {}
        self.interrupts: dict[str, tuple[int, str]] = {}  # the last one's number and id
        self.interrupted_at: dict[str, datetime] = {}
        self.run_attempts_before: dict[str, int] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise DependencyUnavailable("fake ledger is down")

    def _store(self, record: JobRecord) -> JobRecord:
        record = replace(record, run_attempts=record.attempts
                         - self.run_attempts_before.get(record.job_id, 0))
        self.records[record.job_id] = record
        return record

    def _outcome(self, job_id: str, now: datetime) -> None:
        """A new result or interrupt is held: not published yet."""
        self.outcome_at[job_id] = now
        self.published.discard(job_id)

    async def claim(self, job: Job, source: str, owner: str, lease_seconds: float) -> JobRecord:
        self._check()
        now = datetime.now(UTC)
        record = self.records.get(job.job_id)
        self._same_job(job)
        if record is None:
            record = JobRecord(job.job_id, job.trace_id, "running", 1, source, now, now, now)
            self.jobs[job.job_id] = job
        elif record.settled is not None:
            return record
        else:
            lease = self.leases.get(job.job_id)
            if lease is not None and lease[1] > now:
                raise JobConflict(f"job {job.job_id} is running elsewhere")
            record = replace(record, status="running", attempts=record.attempts + 1,
                             updated_at=now, started_at=record.started_at or now)
        self.leases[job.job_id] = (owner, now + timedelta(seconds=lease_seconds))
        return self._store(record)

    async def renew(self, job_id: str, owner: str, lease_seconds: float) -> str | None:
        self._check()
        lease = self.leases.get(job_id)
        if lease is None or lease[0] != owner or self.records[job_id].finished:
            raise LeaseLost(job_id)
        self.leases[job_id] = (owner, datetime.now(UTC) + timedelta(seconds=lease_seconds))
        return self.records[job_id].cancel_reason

    async def cancel(self, job_id: str, reason: str, *, keep_unknown: bool) -> JobRecord:
        self._check()
        now = datetime.now(UTC)
        record = self.records.get(job_id)
        if record is None:
            if not keep_unknown:
                raise JobNotFound(job_id)
            result = JobResult.cancelled(job_id, "", 0, reason)
            record = JobRecord(job_id, "", "cancelled", 0, "nats", now, now, result=result,
                               cancel_reason=reason)
            self.jobs[job_id] = Job(job_id, "", {}, {})
            self._outcome(job_id, now)
        elif record.finished:
            raise JobFinished(f"job {job_id} already {record.status}")
        else:
            lease = self.leases.get(job_id)
            record = replace(record, cancel_reason=reason, updated_at=now)
            if lease is None or lease[1] <= now:
                result = replace(JobResult.cancelled(job_id, record.trace_id, record.attempts,
                                                     reason), run=record.run)
                record = replace(record, status="cancelled", result=result, resume=None)
                self.leases.pop(job_id, None)
                self._outcome(job_id, now)
        return self._store(record)

    async def finish(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        self._check()
        record = self.records[job_id]
        if record.finished and record.result is not None:
            return record.result
        lease = self.leases.get(job_id)
        if lease is None or lease[0] != owner:
            raise LeaseLost(job_id)
        now = datetime.now(UTC)
        self._store(replace(record, status=result.status, result=result, resume=None,
                            updated_at=now))
        del self.leases[job_id]
        self._outcome(job_id, now)
        return result

    async def interrupt(self, job_id: str, owner: str, result: JobResult) -> JobResult:
        self._check()
        assert result.interrupt is not None
        record = self.records.get(job_id)
        lease = self.leases.get(job_id)
        if record is None or record.finished or lease is None or lease[0] != owner:
            raise LeaseLost(job_id)
        now = datetime.now(UTC)
        interrupt_id = str(result.interrupt["interrupt_id"])
        n, last = self.interrupts.get(job_id, (0, None))
        n = n if last == interrupt_id else n + 1
        self.interrupts[job_id] = (n, interrupt_id)
        result = replace(result, interrupt_n=n)
        self._store(replace(record, status="interrupted", result=result, resume=None,
                            updated_at=now))
        del self.leases[job_id]
        self.interrupted_at[job_id] = now
        self._outcome(job_id, now)
        return result

    async def resume(self, job_id: str, resume: Resume) -> JobRecord:
        self._check()
        record = self.records.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        pending = self.interrupts.get(job_id, (0, None))[1]
        if record.status != "interrupted":
            raise WrongJobState(f"job {job_id} is {record.status}, not interrupted")
        if pending != resume.interrupt_id:
            raise WrongJobState(f"job {job_id} waits on interrupt {pending}, "
                                f"not {resume.interrupt_id!r}")
        now = datetime.now(UTC)
        waited = now - self.interrupted_at.pop(job_id, now)
        started = None if record.started_at is None else record.started_at + waited
        self.outcome_at.pop(job_id, None)
        self.published.discard(job_id)
        return self._store(replace(record, status="pending", result=None, resume=resume,
                                   started_at=started, updated_at=now))

    async def retry(self, job_id: str) -> JobRecord:
        self._check()
        record = self.records.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        if record.status not in ("failed", "cancelled"):
            raise WrongJobState(f"job {job_id} is {record.status}, not failed or cancelled")
        if not self.jobs[job_id].agent_definition:
            raise WrongJobState(f"job {job_id} was cancelled before it arrived")
        self.run_attempts_before[job_id] = record.attempts
        n, _ = self.interrupts.get(job_id, (0, ""))
        self.interrupts[job_id] = (n, "")  # the next run's pauses are new ones
        self.outcome_at.pop(job_id, None)
        self.interrupted_at.pop(job_id, None)
        self.published.discard(job_id)
        self.leases.pop(job_id, None)
        return self._store(replace(record, status="pending", run=record.run + 1, result=None,
                                   cancel_reason=None, resume=None, started_at=None,
                                   updated_at=datetime.now(UTC)))

    async def abandon(self, job: Job, source: str, result: JobResult) -> JobResult:
        self._check()
        now = datetime.now(UTC)
        record = self.records.get(job.job_id)
        self._same_job(job)
        if record is not None and record.result is not None:
            return record.result
        lease = self.leases.get(job.job_id)
        if record is not None and lease is not None and lease[1] > now:
            raise JobConflict(f"job {job.job_id} is running elsewhere")
        if record is None:
            record = JobRecord(job.job_id, job.trace_id, "pending", result.attempts, source,
                               now, now)
            self.jobs[job.job_id] = job
        self._store(replace(record, status=result.status, result=result, resume=None,
                            updated_at=now))
        self.leases.pop(job.job_id, None)
        self._outcome(job.job_id, now)
        return result

    def _same_job(self, job: Job) -> None:
        known = self.fingerprints.setdefault(job.job_id, fingerprint(job))
        if known != fingerprint(job):
            raise JobMismatch(mismatch_message(job.job_id))

    async def mark_published(self, job_id: str, event_id: str) -> None:
        self._check()
        result = self.records[job_id].result
        if result is not None and result.event_id == event_id:
            self.published.add(job_id)

    async def unpublished(self, older_than_seconds: float, limit: int) -> list[JobResult]:
        self._check()
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        due = sorted((at, job_id) for job_id, at in self.outcome_at.items()
                     if job_id not in self.published and at <= cutoff)
        results = [self.records[job_id].result for _, job_id in due[:limit]]
        return [r for r in results if r is not None]

    async def release(self, job_id: str, owner: str) -> None:
        lease = self.leases.get(job_id)
        if lease is not None and lease[0] == owner:
            del self.leases[job_id]

    async def claim_orphan(self, sources: frozenset[str], owner: str,
                           lease_seconds: float) -> tuple[Job, JobRecord] | None:
        self._check()
        now = datetime.now(UTC)
        for job_id, record in self.records.items():
            lease = self.leases.get(job_id)
            if record.finished or record.status == "interrupted" \
                    or record.source not in sources or (lease and lease[1] > now):
                continue
            job = self.jobs[job_id]
            return job, await self.claim(job, record.source, owner, lease_seconds)
        return None

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        return self.records.get(job_id)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        self._check()
        after = time_cursor(query.cursor) if query.cursor is not None else None
        chosen = sorted((r for r in self.records.values()
                         if (not query.statuses or r.status in query.statuses)
                         and (not query.sources or r.source in query.sources)
                         and (after is None or (r.created_at, r.job_id) < after)),
                        key=lambda r: (r.created_at, r.job_id), reverse=True)
        page = chosen[:query.limit]
        more = len(chosen) > query.limit
        last = page[-1] if page else None
        return JobPage(page, encode_cursor(last.created_at.isoformat(), last.job_id)
                       if more and last is not None else None)

    def expire(self, job_id: str) -> None:
        owner, _ = self.leases[job_id]
        self.leases[job_id] = (owner, datetime.now(UTC) - timedelta(seconds=1))


class FakeRuntime:
    """Emits `tokens` as on_llm_stream events, then answers; can fail or block."""

    def __init__(self, tokens: tuple[str, ...] = ("Hello", " world"),
                 error: Exception | None = None) -> None:
        self.tokens = tokens
        self.error = error
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None  # when set, runs wait for it
        self.started = asyncio.Event()
        self.pauses: list[Interrupt] = []  # runs pause at the first until resumed with it
        self.resumes: list[Resume | None] = []
        self.spent = Usage()  # what `usage` reports for every job

    async def usage(self, job: Job) -> Usage:
        return self.spent

    async def run(self, job: Job, emit: EventSink,
                  resume: Resume | None = None) -> AgentOutput | Interrupt:
        self.calls.append(job.job_id)
        self.resumes.append(resume)
        self.started.set()
        for token in self.tokens:
            await emit("on_llm_stream", {"agent": "Orchestrator", "content": token})
        if self.gate is not None:
            await self.gate.wait()
        if self.pauses:
            if resume is None or resume.interrupt_id != self.pauses[0].interrupt_id:
                return self.pauses[0]
            self.pauses.pop(0)
            if self.pauses:
                return self.pauses[0]
        if self.error is not None:
            raise self.error
        text = "".join(self.tokens)
        return AgentOutput(text, {"/out.md": text}, [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": text}])


class FakeEventWriter:
    def __init__(self, stream: FakeEventStream, job_id: str, trace_id: str, run: int) -> None:
        self.stream, self.job_id, self.trace_id, self.run = stream, job_id, trace_id, run
        self.closed = False

    async def emit(self, event_type: str, data: Mapping[str, Any]) -> None:
        events = self.stream.events.setdefault(self.job_id, [])
        if self.stream.down:
            return  # lost, as in an outage (a real writer counts it)
        if self.stream.ended_run(self.job_id) >= self.run:
            self.stream.refused.append((self.job_id, event_type))  # one `end` per run, last
            return
        events.append(StreamEvent(event_type, self.job_id, self.trace_id, len(events) + 1,
                                  utc_timestamp(), dict(data)))
        async with self.stream.changed:
            self.stream.changed.notify_all()

    async def aclose(self) -> None:
        self.closed = True


class FakeEventStream:
    """In memory, with the real streams' rules (contract suite: tests/event_stream_contract.py);
    `down` makes `subscribe` and `has_end` raise as an unreachable backend would."""

    def __init__(self) -> None:
        self.events: dict[str, list[StreamEvent]] = {}
        self.refused: list[tuple[str, str]] = []  # (job_id, event_type) after its run's `end`
        self.changed = asyncio.Condition()
        self.down = False  # writes are lost and has_end cannot tell, as in an outage

    async def subscribe(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                        until_run: int = 1) -> AsyncIterator[StreamEvent]:
        if self.down:
            raise DependencyUnavailable("fake event stream is down")
        return self.follow(job_id, after_seq, live=live, until_run=until_run)

    async def has_end(self, job_id: str, run: int) -> bool:
        if self.down:
            raise DependencyUnavailable("fake event stream is down")
        return self.ended_run(job_id) >= run

    def ended_run(self, job_id: str) -> int:
        """The run of the job's latest `end` (0: none), read from the events themselves
        (a test that deletes an `end` makes its run unended again)."""
        return max((e.data.get("run", 1) for e in self.events.get(job_id, [])
                    if e.event_type == END), default=0)

    async def writer(self, job_id: str, trace_id: str, *, run: int) -> FakeEventWriter:
        return FakeEventWriter(self, job_id, trace_id, run)


    async def follow(self, job_id: str, after_seq: int = 0, *, live: bool = True,
                     until_run: int = 1) -> AsyncIterator[StreamEvent]:
        seen = after_seq
        if self.ended_run(job_id) >= until_run and len(self.events.get(job_id, [])) <= seen:
            return  # its `end` is behind `after_seq`: nothing more will come
        while True:
            for event in self.events.get(job_id, [])[seen:]:  # seq n is at index n - 1
                seen = event.seq
                yield event
                if ends_run(event, until_run):
                    return
            if not live:
                return
            async with self.changed:
                await self.changed.wait_for(self._has_more(job_id, seen))

    def _has_more(self, job_id: str, seen: int) -> Callable[[], bool]:
        return lambda: len(self.events.get(job_id, [])) > seen


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[JobResult] = []
        self.down = False

    async def publish(self, result: JobResult) -> None:
        if self.down:
            raise DependencyUnavailable("fake bus is down")
        self.published.append(result)


class FakeMetrics:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []
        self.interrupted: list[str] = []
        self.failures: list[str] = []
        self.waiting = 0

    def job_started(self, source: str) -> None:
        self.started.append(source)

    def job_finished(self, source: str, status: str, duration_seconds: float | None,
                     error_type: str | None = None) -> None:
        self.finished.append((source, status))
        if error_type is not None:
            self.failures.append(error_type)

    def job_waiting(self, delta: int) -> None:
        self.waiting += delta

    def job_interrupted(self, source: str) -> None:
        self.interrupted.append(source)


class FakeProbe:
    def __init__(self, name: str, ok: bool = True, embedded: bool = False) -> None:
        self.name, self.ok, self.embedded = name, ok, embedded

    async def check(self) -> ProbeResult:
        return ProbeResult(self.ok, self.embedded, None if self.ok else "down")
