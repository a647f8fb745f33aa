"""The behaviour every `JobLedger` implementation shares (ports/ledger.py).

Subclass `LedgerContract` in a `Test*` class and provide an async fixture
`ledger` yielding a fresh, empty ledger. Leases are made to expire by claiming
with `SHORT_LEASE` and then polling (bounded) until a takeover succeeds, so no
test sleeps for a fixed time and none depends on a fast machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from agent_executor.domain.errors import (
    InvalidRequest,
    JobConflict,
    JobFinished,
    JobMismatch,
    JobNotFound,
    LeaseLost,
    WrongJobState,
)
from agent_executor.domain.interrupts import Decision, Interrupt, Resume, ToolRequest
from agent_executor.domain.job import Job
from agent_executor.domain.listing import JobQuery, encode_cursor, summary
from agent_executor.domain.result import AgentOutput, ErrorInfo, JobRecord, JobResult
from agent_executor.ports.ledger import JobLedger

T = TypeVar("T")

LEASE = 30.0
SHORT_LEASE = 0.05
DEADLINE_SECONDS = 10.0
A, B = "worker-a", "worker-b"


def make_job(job_id: str = "job-1") -> Job:
    return Job(job_id=job_id, trace_id=f"trace-{job_id}",
               agent_definition={"name": "spec-builder", "version": "1",
                                 "nodes": [{"id": "o", "type": "Orchestrator",
                                            "config": {"name": "O", "tools": []}}]},
               input_payload={"messages": [{"role": "user", "content": "Write the spec ✓"}],
                              "files": {"/a.md": "x"}})


def completed(job: Job, attempts: int = 1) -> JobResult:
    output = AgentOutput("done", {"/spec.md": "# Spec\n"},
                         [{"role": "user", "content": "hi"}, {"role": "ai", "content": "done"}])
    return JobResult.completed(job.job_id, job.trace_id, attempts, output, duration_ms=1234)


def failed(job: Job, attempts: int = 1) -> JobResult:
    return JobResult.failed(job.job_id, job.trace_id, attempts,
                            ErrorInfo("ModelError", "provider said no", retryable=False))


def paused(job: Job, interrupt_id: str = "i-1") -> JobResult:
    """The run paused before a tool call that needs a decision (not yet numbered)."""
    interrupt = Interrupt(interrupt_id, "O", (ToolRequest(
        "write_file", f"call-{interrupt_id}", {"path": "/spec.md", "content": "# ✓"},
        ("approve", "reject")),))
    return JobResult.interrupted(job.job_id, job.trace_id, 1, interrupt.to_data())


def approve(interrupt_id: str = "i-1") -> Resume:
    return Resume(interrupt_id, (Decision("approve"),))


async def eventually(action: Callable[[], Awaitable[T | None]],
                     retry_on: tuple[type[Exception], ...] = ()) -> T:
    """Repeat `action` until it returns something other than None without raising
    one of `retry_on`; fail after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            value = await action()
            if value is not None:
                return value
        except retry_on:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {DEADLINE_SECONDS}s")
        await asyncio.sleep(0.01)


async def take_over(ledger: JobLedger, job: Job, owner: str = B,
                    source: str = "http") -> JobRecord:
    """Claim `job` as soon as its (short) lease has expired."""
    return await eventually(lambda: ledger.claim(job, source, owner, LEASE), (JobConflict,))


class CoreContract:
    """Claims, leases, results, cancels, the outbox and the list."""

    async def test_get_unknown_job_is_none(self, ledger: JobLedger) -> None:
        assert await ledger.get("nope") is None

    async def test_new_claim_runs_first_attempt(self, ledger: JobLedger) -> None:
        job = make_job()
        before = datetime.now(UTC)
        record = await ledger.claim(job, "http", A, LEASE)
        assert (record.job_id, record.trace_id, record.status, record.attempts,
                record.source) == (job.job_id, job.trace_id, "running", 1, "http")
        assert record.started_at is not None and record.result is None
        assert abs((record.started_at - before).total_seconds()) < 60
        assert await ledger.get(job.job_id) == record

    async def test_claim_under_live_lease_conflicts_whoever_asks(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        with pytest.raises(JobConflict):
            await ledger.claim(job, "nats", B, LEASE)
        with pytest.raises(JobConflict):
            await ledger.claim(job, "http", A, LEASE)
        record = await ledger.get(job.job_id)
        assert record is not None and record.attempts == 1

    async def test_claim_after_expiry_is_a_new_attempt(self, ledger: JobLedger) -> None:
        job = make_job()
        first = await ledger.claim(job, "http", A, SHORT_LEASE)
        second = await take_over(ledger, job)
        assert (second.status, second.attempts) == ("running", 2)
        assert second.started_at == first.started_at
        assert second.created_at == first.created_at

    async def test_renew_by_owner_keeps_the_lease(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, SHORT_LEASE)
        await ledger.renew(job.job_id, A, LEASE)
        with pytest.raises(JobConflict):
            await ledger.claim(job, "http", B, LEASE)

    async def test_renew_by_another_owner_is_lease_lost(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        with pytest.raises(LeaseLost):
            await ledger.renew(job.job_id, B, LEASE)

    async def test_renew_after_takeover_is_lease_lost(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, SHORT_LEASE)
        await take_over(ledger, job)
        with pytest.raises(LeaseLost):
            await ledger.renew(job.job_id, A, LEASE)
        await ledger.renew(job.job_id, B, LEASE)

    @pytest.mark.parametrize("outcome", [completed, failed])
    async def test_finish_records_the_result_exactly(
            self, ledger: JobLedger, outcome: Callable[[Job], JobResult]) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        result = outcome(job)
        assert await ledger.finish(job.job_id, A, result) == result
        record = await ledger.get(job.job_id)
        assert record is not None
        assert (record.status, record.attempts, record.finished) == (result.status, 1, True)
        assert record.result == result
        assert record.result.finished_at == result.finished_at

    async def test_claim_of_finished_job_returns_it_unchanged(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        result = await ledger.finish(job.job_id, A, completed(job))
        for owner, source in ((B, "nats"), (A, "http")):  # the lease is free: no conflict
            record = await ledger.claim(job, source, owner, LEASE)
            assert (record.status, record.attempts, record.result) == ("completed", 1, result)
            assert record.source == "http"
        assert await ledger.claim_orphan(frozenset({"http", "nats"}), B, LEASE) is None
        with pytest.raises(LeaseLost):
            await ledger.renew(job.job_id, B, LEASE)

    async def test_finish_by_previous_owner_after_takeover_is_lease_lost(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, SHORT_LEASE)
        await take_over(ledger, job)
        with pytest.raises(LeaseLost):
            await ledger.finish(job.job_id, A, completed(job, attempts=1))
        record = await ledger.get(job.job_id)
        assert record is not None and not record.finished
        ours = completed(job, attempts=2)
        assert await ledger.finish(job.job_id, B, ours) == ours

    async def test_finish_of_finished_job_returns_the_recorded_result(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        first = await ledger.finish(job.job_id, A, completed(job))
        assert await ledger.finish(job.job_id, A, failed(job)) == first
        assert await ledger.finish(job.job_id, B, failed(job)) == first
        record = await ledger.get(job.job_id)
        assert record is not None and record.result == first

    async def test_release_makes_the_job_claimable_at_once(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.release(job.job_id, B)  # not the owner: no effect
        with pytest.raises(JobConflict):
            await ledger.claim(job, "http", B, LEASE)
        await ledger.release(job.job_id, A)
        record = await ledger.get(job.job_id)
        assert record is not None and not record.finished and record.attempts == 1
        with pytest.raises(LeaseLost):
            await ledger.renew(job.job_id, A, LEASE)
        record = await ledger.claim(job, "http", B, LEASE)
        assert (record.status, record.attempts) == ("running", 2)

    async def test_claim_orphan_takes_only_expired_unfinished_jobs_of_the_sources(
            self, ledger: JobLedger) -> None:
        from_nats, from_http = make_job("from-nats"), make_job("from-http")
        live, done = make_job("live"), make_job("done")
        await ledger.claim(from_nats, "nats", A, SHORT_LEASE)
        await ledger.claim(from_http, "http", A, SHORT_LEASE)
        await ledger.claim(live, "http", A, LEASE)
        await ledger.claim(done, "http", A, LEASE)
        await ledger.finish(done.job_id, A, completed(done))

        orphan = await eventually(lambda: ledger.claim_orphan(frozenset({"http"}), B, LEASE))
        job, record = orphan
        assert job == from_http
        assert (job.agent_definition, job.input_payload) == (
            from_http.agent_definition, from_http.input_payload)
        assert (record.job_id, record.status, record.attempts, record.source) == (
            "from-http", "running", 2, "http")
        # from-http is B's now, live is A's, done is finished, from-nats is not asked for
        assert await ledger.claim_orphan(frozenset({"http"}), B, LEASE) is None
        # from-nats was claimed before from-http, so its lease has expired too
        taken = await ledger.claim_orphan(frozenset({"nats"}), B, LEASE)
        assert taken is not None and taken[0] == from_nats and taken[1].source == "nats"
        assert await ledger.claim_orphan(frozenset({"http", "nats"}), B, LEASE) is None
        with pytest.raises(LeaseLost):
            await ledger.renew(from_http.job_id, A, LEASE)

    async def test_released_job_is_an_orphan_at_once(self, ledger: JobLedger) -> None:
        job = make_job()
        first = await ledger.claim(job, "http", A, LEASE)
        await ledger.release(job.job_id, A)
        orphan = await ledger.claim_orphan(frozenset({"http"}), B, LEASE)
        assert orphan is not None
        assert orphan[0] == job
        assert (orphan[1].attempts, orphan[1].started_at) == (2, first.started_at)

    async def test_concurrent_orphan_claims_give_the_job_to_one(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.release(job.job_id, A)
        owners = [f"reaper-{i}" for i in range(10)]
        taken = await asyncio.gather(
            *(ledger.claim_orphan(frozenset({"http"}), o, LEASE) for o in owners))
        winners = [o for o, t in zip(owners, taken, strict=True) if t is not None]
        assert len(winners) == 1
        await ledger.renew(job.job_id, winners[0], LEASE)
        record = await ledger.get(job.job_id)
        assert record is not None and record.attempts == 2

    async def test_concurrent_claims_of_a_new_job_give_it_to_one(self, ledger: JobLedger) -> None:
        job = make_job()
        outcomes = await asyncio.gather(
            *(ledger.claim(job, "http", f"w-{i}", LEASE) for i in range(10)),
            return_exceptions=True)
        assert _kinds(outcomes) == {"JobRecord": 1, "JobConflict": 9}
        record = await ledger.get(job.job_id)
        assert record is not None and record.attempts == 1

    async def test_concurrent_takeovers_give_the_job_to_one(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.release(job.job_id, A)
        outcomes = await asyncio.gather(
            *(ledger.claim(job, "http", f"w-{i}", LEASE) for i in range(10)),
            *(ledger.claim_orphan(frozenset({"http"}), f"r-{i}", LEASE) for i in range(10)),
            return_exceptions=True)
        kinds = _kinds(outcomes)
        assert kinds.get("JobRecord", 0) + kinds.get("tuple", 0) == 1
        record = await ledger.get(job.job_id)
        assert record is not None and record.attempts == 2

    async def test_abandon_records_an_unknown_job_finished(self, ledger: JobLedger) -> None:
        job = make_job()
        result = failed(job, attempts=0)
        assert await ledger.abandon(job, "nats", result) == result
        record = await ledger.get(job.job_id)
        assert record is not None and record.finished and record.result == result
        assert record.source == "nats"
        again = await ledger.claim(job, "nats", B, LEASE)
        assert again.result == result  # never run afterwards

    async def test_abandon_of_a_finished_job_returns_its_result(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "nats", A, LEASE)
        done = await ledger.finish(job.job_id, A, completed(job))
        assert await ledger.abandon(job, "nats", failed(job)) == done

    async def test_abandon_of_a_running_job_conflicts(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "nats", A, LEASE)
        with pytest.raises(JobConflict):
            await ledger.abandon(job, "nats", failed(job))
        record = await ledger.get(job.job_id)
        assert record is not None and not record.finished
        await ledger.renew(job.job_id, A, LEASE)  # the runner keeps its lease

    async def test_abandon_of_an_orphan_ends_it_for_every_reaper(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "nats", A, LEASE)
        await ledger.release(job.job_id, A)
        result = failed(job)
        assert await ledger.abandon(job, "nats", result) == result
        assert await ledger.claim_orphan(frozenset({"nats"}), B, LEASE) is None
        # a late runner finds the job ended: the recorded result stands
        assert await ledger.finish(job.job_id, A, completed(job)) == result

    async def test_unpublished_results_until_marked(self, ledger: JobLedger) -> None:
        first, second, running = make_job("first"), make_job("second"), make_job("running")
        for job in (first, second, running):
            await ledger.claim(job, "http", A, LEASE)
        await ledger.finish(first.job_id, A, completed(first))
        await ledger.finish(second.job_id, A, failed(second))
        assert await ledger.unpublished(3600, 10) == []  # too recent: the runner publishes
        due = await eventually(lambda: _at_least(ledger.unpublished(0, 10), 2))
        assert [r.job_id for r in due] == ["first", "second"]
        assert [r.job_id for r in await ledger.unpublished(0, 1)] == ["first"]
        await ledger.mark_published(first.job_id, f"{first.job_id}:completed")
        # unfinished: nothing to mark
        await ledger.mark_published(running.job_id, f"{running.job_id}:completed")
        assert [r.job_id for r in await ledger.unpublished(0, 10)] == ["second"]
        await ledger.finish(running.job_id, A, completed(running))
        assert [r.job_id for r in await ledger.unpublished(0, 10)] == ["second", "running"]

    async def test_a_known_job_id_with_another_definition_or_input_is_a_mismatch(
            self, ledger: JobLedger) -> None:
        job = make_job()
        other_input = Job(job.job_id, job.trace_id, job.agent_definition,
                          {"messages": [{"role": "user", "content": "Write the spec, fixed"}]})
        other_definition = Job(job.job_id, job.trace_id, {**job.agent_definition, "version": "2"},
                               job.input_payload)
        await ledger.claim(job, "http", A, LEASE)
        for changed in (other_input, other_definition):  # running
            with pytest.raises(JobMismatch):
                await ledger.claim(changed, "http", B, LEASE)
        await ledger.finish(job.job_id, A, completed(job))
        for changed in (other_input, other_definition):  # finished
            with pytest.raises(JobMismatch):
                await ledger.claim(changed, "http", B, LEASE)
            with pytest.raises(JobMismatch):
                await ledger.abandon(changed, "nats", failed(changed))
        record = await ledger.get(job.job_id)
        assert record is not None and record.attempts == 1 and record.status == "completed"

    async def test_the_same_content_with_another_trace_id_is_the_same_job(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        result = await ledger.finish(job.job_id, A, completed(job))
        traced_anew = Job(job.job_id, "another-trace", job.agent_definition, job.input_payload)
        assert (await ledger.claim(traced_anew, "nats", B, LEASE)).result == result

    async def test_cancel_of_a_pending_job_ends_it_at_once(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.release(job.job_id, A)
        record = await ledger.cancel(job.job_id, "not needed", keep_unknown=False)
        assert record.status == "cancelled" and record.result is not None
        result = record.result
        assert (result.status, result.reason, result.trace_id, result.attempts) == (
            "cancelled", "not needed", job.trace_id, 1)
        assert result.event_id == f"{job.job_id}:cancelled"
        assert (await ledger.claim(job, "nats", B, LEASE)).result == result  # never starts
        assert await ledger.claim_orphan(frozenset({"http"}), B, LEASE) is None
        assert await ledger.get(job.job_id) == record

    async def test_cancel_of_a_running_job_is_noted_for_its_runner(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, SHORT_LEASE)
        await ledger.renew(job.job_id, A, LEASE)
        assert await ledger.renew(job.job_id, A, LEASE) is None
        record = await ledger.cancel(job.job_id, "user asked", keep_unknown=False)
        assert (record.status, record.result, record.cancel_reason) == (
            "running", None, "user asked")
        assert await ledger.renew(job.job_id, A, LEASE) == "user asked"
        ours = JobResult.cancelled(job.job_id, job.trace_id, 1, "user asked")
        assert await ledger.finish(job.job_id, A, ours) == ours
        with pytest.raises(JobFinished):
            await ledger.cancel(job.job_id, "again", keep_unknown=True)

    async def test_a_noted_cancel_survives_its_runner(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, SHORT_LEASE)
        await ledger.cancel(job.job_id, "stop", keep_unknown=False)
        taken = await take_over(ledger, job)  # A died: whoever takes it over is told
        assert taken.cancel_reason == "stop"

    async def test_cancel_of_an_unknown_job(self, ledger: JobLedger) -> None:
        with pytest.raises(JobNotFound):
            await ledger.cancel("nope", "x", keep_unknown=False)
        assert await ledger.get("nope") is None
        kept = await ledger.cancel("early", "cancelled before it arrived", keep_unknown=True)
        assert kept.status == "cancelled" and kept.result is not None
        arrived = await ledger.claim(make_job("early"), "nats", A, LEASE)
        assert arrived.result == kept.result  # it ends cancelled without running


    async def test_list_pages_a_thousand_jobs_by_seven_each_once_newest_first(
            self, ledger: JobLedger) -> None:
        created = await _some_jobs(ledger, 1000)
        seen: list[JobRecord] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await ledger.list_jobs(JobQuery(limit=7, cursor=cursor))
            pages += 1
            assert len(page.records) == 7 or page.next_cursor is None
            seen.extend(page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            assert pages < 1000, "paging does not end"
        ids = [r.job_id for r in seen]
        assert len(ids) == 1000 and set(ids) == set(created), "each job exactly once"
        assert pages == 143  # ceil(1000 / 7): the last full page says there is more
        keys = [(r.created_at, r.job_id) for r in seen]
        assert keys == sorted(keys, reverse=True), "newest first, ties by job_id"
        for record in seen[::97]:
            stored = await ledger.get(record.job_id)
            assert stored is not None and summary(record) == summary(stored)

    async def test_list_filters_by_status_and_source(self, ledger: JobLedger) -> None:
        created = await _some_jobs(ledger, 30)
        everything = (await ledger.list_jobs(JobQuery(limit=500))).records
        assert {r.job_id for r in everything} == set(created)
        for statuses, sources in ((frozenset({"completed"}), frozenset()),
                                  (frozenset({"failed", "running"}), frozenset()),
                                  (frozenset(), frozenset({"nats"})),
                                  (frozenset({"pending", "completed"}), frozenset({"http"})),
                                  (frozenset({"cancelled", "interrupted"}), frozenset()),
                                  (frozenset(), frozenset({"cli"}))):
            expected = [r.job_id for r in everything
                        if (not statuses or r.status in statuses)
                        and (not sources or r.source in sources)]
            found: list[str] = []
            cursor: str | None = None
            while True:
                page = await ledger.list_jobs(JobQuery(statuses, sources, 4, cursor))
                found.extend(r.job_id for r in page.records)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert found == expected, (statuses, sources)
        statuses_seen = {r.status for r in everything}
        assert statuses_seen >= {"running", "completed", "failed", "interrupted"}
        assert {r.source for r in everything} == {"http", "nats"}

    async def test_list_of_an_empty_ledger_and_an_exact_last_page(
            self, ledger: JobLedger) -> None:
        empty = await ledger.list_jobs(JobQuery())
        assert (empty.records, empty.next_cursor) == ([], None)
        await _some_jobs(ledger, 4)
        first = await ledger.list_jobs(JobQuery(limit=2))
        assert len(first.records) == 2 and first.next_cursor is not None
        second = await ledger.list_jobs(JobQuery(limit=2, cursor=first.next_cursor))
        assert len(second.records) == 2 and second.next_cursor is None
        finished = [r for r in first.records + second.records if r.finished]
        assert all(r.result is not None for r in finished)  # finished_at is there

    async def test_list_does_not_return_jobs_created_after_the_cursor(
            self, ledger: JobLedger) -> None:
        await _some_jobs(ledger, 5)
        first = await ledger.list_jobs(JobQuery(limit=2))
        assert first.next_cursor is not None
        await ledger.claim(make_job("newer"), "http", A, LEASE)
        rest = await ledger.list_jobs(JobQuery(limit=10, cursor=first.next_cursor))
        assert len(rest.records) == 3 and "newer" not in {r.job_id for r in rest.records}
        newest = await ledger.list_jobs(JobQuery(limit=1))
        assert newest.records[0].job_id == "newer"

    @pytest.mark.parametrize("cursor", ["", "%%%", "bm90IGpzb24", encode_cursor(True, "x"),
                                        "WzEsMiwzXQ", encode_cursor(1.5, "x") + "!"])
    async def test_list_refuses_a_cursor_it_did_not_write(
            self, ledger: JobLedger, cursor: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            await ledger.list_jobs(JobQuery(cursor=cursor))
        assert any(d.startswith("cursor") for d in caught.value.details)


class SteeringContract:
    """Interrupt, resume, retry and what they do to the other rules (CONTRACT 2a)."""

    async def test_interrupt_records_the_pause_numbered_and_frees_the_lease(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        pause = paused(job)
        recorded = await ledger.interrupt(job.job_id, A, pause)
        assert (recorded.status, recorded.interrupt, recorded.interrupt_n, recorded.run) == (
            "interrupted", pause.interrupt, 1, 1)
        assert recorded.event_id == f"{job.job_id}:interrupted:1"
        record = await ledger.get(job.job_id)
        assert record is not None
        assert (record.status, record.finished, record.result, record.settled) == (
            "interrupted", False, recorded, recorded)
        for lost in (ledger.renew(job.job_id, A, LEASE),
                     ledger.finish(job.job_id, A, completed(job)),
                     ledger.interrupt(job.job_id, A, pause)):
            with pytest.raises(LeaseLost):  # the lease was given back
                await lost
        assert await ledger.get(job.job_id) == record

    async def test_interrupt_by_another_owner_is_lease_lost(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        with pytest.raises(LeaseLost):
            await ledger.interrupt(job.job_id, B, paused(job))
        with pytest.raises(LeaseLost):
            await ledger.interrupt("unknown", B, paused(make_job("unknown")))
        record = await ledger.get(job.job_id)
        assert record is not None and (record.status, record.result) == ("running", None)
        await ledger.renew(job.job_id, A, LEASE)

    async def test_interrupts_count_on_and_the_same_pause_keeps_its_number(
            self, ledger: JobLedger) -> None:
        job = make_job()
        numbers = []
        for interrupt_id in ("i-1", "i-1", "i-2", "i-3"):
            await ledger.claim(job, "http", A, LEASE)
            recorded = await ledger.interrupt(job.job_id, A, paused(job, interrupt_id))
            numbers.append((recorded.interrupt_n, recorded.event_id))
            await ledger.resume(job.job_id, approve(interrupt_id))
        assert numbers == [(1, "job-1:interrupted:1"), (1, "job-1:interrupted:1"),
                           (2, "job-1:interrupted:2"), (3, "job-1:interrupted:3")]

    async def test_a_retried_run_pausing_where_the_last_one_did_is_a_new_interrupt(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        first = await ledger.interrupt(job.job_id, A, paused(job, "i-1"))
        await ledger.cancel(job.job_id, "later", keep_unknown=False)
        await ledger.retry(job.job_id)
        await ledger.claim(job, "http", A, LEASE)  # from the checkpoint: the same pause
        second = await ledger.interrupt(job.job_id, A, paused(job, "i-1"))
        assert (first.event_id, second.event_id) == (
            "job-1:interrupted:1", "job-1:interrupted:2")
        record = await ledger.resume(job.job_id, approve("i-1"))
        assert (record.status, record.run) == ("pending", 2)

    async def test_claim_of_an_interrupted_job_returns_it_untouched(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "nats", A, LEASE)
        pause = await ledger.interrupt(job.job_id, A, paused(job))
        before = await ledger.get(job.job_id)
        for owner, source in ((B, "http"), (A, "nats")):
            record = await ledger.claim(job, source, owner, LEASE)
            assert record == before and record.settled == pause  # no attempt counted
        assert await ledger.claim_orphan(frozenset({"http", "nats"}), B, LEASE) is None
        assert await ledger.abandon(job, "nats", failed(job)) == pause
        with pytest.raises(JobMismatch):
            await ledger.claim(make_job_like(job, "other input"), "nats", B, LEASE)
        assert await ledger.get(job.job_id) == before

    async def test_claim_orphan_skips_interrupted_jobs_and_takes_resumed_and_retried_ones(
            self, ledger: JobLedger) -> None:
        waiting, resumed, retried = make_job("waiting"), make_job("resumed"), make_job("retried")
        for job in (waiting, resumed, retried):
            await ledger.claim(job, "http", A, LEASE)
        await ledger.interrupt(waiting.job_id, A, paused(waiting))
        await ledger.interrupt(resumed.job_id, A, paused(resumed))
        await ledger.finish(retried.job_id, A, failed(retried))
        assert await ledger.claim_orphan(frozenset({"http"}), B, LEASE) is None
        await ledger.resume(resumed.job_id, approve())
        await ledger.retry(retried.job_id)
        taken: dict[str, JobRecord] = {}
        for _ in range(2):
            orphan = await ledger.claim_orphan(frozenset({"http"}), B, LEASE)
            assert orphan is not None
            taken[orphan[0].job_id] = orphan[1]
            assert orphan[0] in (resumed, retried)
        assert await ledger.claim_orphan(frozenset({"http"}), B, LEASE) is None
        got = taken["resumed"]
        assert (got.status, got.attempts, got.run_attempts, got.resume) == (
            "running", 2, 2, approve())
        got = taken["retried"]
        assert (got.status, got.attempts, got.run_attempts, got.run, got.resume) == (
            "running", 2, 1, 2, None)
        waits = await ledger.get(waiting.job_id)
        assert waits is not None and waits.status == "interrupted"

    async def test_resume_with_the_pending_interrupt_makes_the_job_pending(
            self, ledger: JobLedger) -> None:
        job = make_job()
        first = await ledger.claim(job, "http", A, LEASE)
        assert first.started_at is not None and first.run_attempts == 1
        clock = time.monotonic()
        await ledger.interrupt(job.job_id, A, paused(job))
        while time.monotonic() - clock < 0.2:  # the job waits a while for its decision
            await asyncio.sleep(0.05)
        record = await ledger.resume(job.job_id, approve())
        waited = time.monotonic() - clock
        assert (record.status, record.result, record.resume, record.attempts,
                record.finished, record.settled) == ("pending", None, approve(), 1, False, None)
        assert record.started_at is not None  # moved on by the wait: running time only
        assert 0.15 <= (record.started_at - first.started_at).total_seconds() <= waited + 1
        assert await ledger.get(job.job_id) == record
        assert await ledger.unpublished(0, 10) == []  # nothing to publish: no outcome held
        claimed = await ledger.claim(job, "nats", B, LEASE)
        assert (claimed.status, claimed.attempts, claimed.run_attempts, claimed.resume,
                claimed.started_at, claimed.source) == (
            "running", 2, 2, approve(), record.started_at, "http")
        await ledger.interrupt(job.job_id, B, paused(job, "i-2"))  # applied: cleared
        again = await ledger.resume(job.job_id, approve("i-2"))
        assert again.resume == approve("i-2")
        await ledger.claim(job, "http", A, LEASE)
        await ledger.finish(job.job_id, A, completed(job, attempts=3))
        done = await ledger.get(job.job_id)
        assert done is not None and (done.status, done.resume) == ("completed", None)

    async def test_resume_refuses_another_interrupt_and_jobs_not_interrupted(
            self, ledger: JobLedger) -> None:
        job = make_job()
        with pytest.raises(JobNotFound):
            await ledger.resume(job.job_id, approve())
        await ledger.claim(job, "http", A, LEASE)
        with pytest.raises(WrongJobState, match="running"):
            await ledger.resume(job.job_id, approve())
        await ledger.interrupt(job.job_id, A, paused(job, "i-1"))
        waiting = await ledger.get(job.job_id)
        with pytest.raises(WrongJobState, match="i-1"):
            await ledger.resume(job.job_id, approve("i-0"))
        assert await ledger.get(job.job_id) == waiting
        await ledger.resume(job.job_id, approve("i-1"))
        with pytest.raises(WrongJobState, match="pending"):  # resumed once only
            await ledger.resume(job.job_id, approve("i-1"))
        await ledger.claim(job, "http", A, LEASE)
        await ledger.finish(job.job_id, A, completed(job, attempts=2))
        with pytest.raises(WrongJobState, match="completed"):
            await ledger.resume(job.job_id, approve("i-1"))

    @pytest.mark.parametrize("ending", ["failed", "cancelled"])
    async def test_retry_starts_the_next_run(self, ledger: JobLedger, ending: str) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        if ending == "failed":
            first = await ledger.finish(job.job_id, A, failed(job))
        else:
            await ledger.cancel(job.job_id, "stop", keep_unknown=False)
            first = await ledger.finish(job.job_id, A, JobResult.cancelled(
                job.job_id, job.trace_id, 1, "stop"))
        await ledger.mark_published(job.job_id, first.event_id)
        record = await ledger.retry(job.job_id)
        assert (record.status, record.run, record.attempts, record.run_attempts,
                record.result, record.cancel_reason, record.resume, record.started_at,
                record.finished) == ("pending", 2, 1, 0, None, None, None, None, False)
        assert await ledger.get(job.job_id) == record
        with pytest.raises(WrongJobState):  # pending now: one retry per ending
            await ledger.retry(job.job_id)
        claimed = await ledger.claim(job, "nats", B, LEASE)
        assert (claimed.status, claimed.run, claimed.attempts, claimed.run_attempts,
                claimed.cancel_reason) == ("running", 2, 2, 1, None)
        assert claimed.started_at is not None
        assert await ledger.renew(job.job_id, B, LEASE) is None  # the old cancel is gone
        second = replace(completed(job, attempts=2), run=2)
        assert await ledger.finish(job.job_id, B, second) == second
        due = await eventually(lambda: _at_least(ledger.unpublished(0, 10), 1))
        assert [r.event_id for r in due] == ["job-1:completed:2"]  # published anew

    async def test_a_cancel_of_a_later_run_is_that_runs_result(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.finish(job.job_id, A, failed(job))
        await ledger.retry(job.job_id)
        record = await ledger.cancel(job.job_id, "not now", keep_unknown=False)
        assert record.result is not None
        assert (record.status, record.run, record.result.run, record.result.event_id) == (
            "cancelled", 2, 2, "job-1:cancelled:2")
        third = await ledger.retry(job.job_id)
        assert (third.run, third.attempts, third.run_attempts) == (3, 1, 0)

    async def test_retry_refuses_jobs_that_are_not_failed_or_cancelled(
            self, ledger: JobLedger) -> None:
        with pytest.raises(JobNotFound):
            await ledger.retry("nope")
        running, done, waiting, pending = (make_job(i) for i in ("running", "done", "waiting",
                                                                 "pending"))
        for job in (running, done, waiting, pending):
            await ledger.claim(job, "http", A, LEASE)
        await ledger.finish(done.job_id, A, completed(done))
        await ledger.interrupt(waiting.job_id, A, paused(waiting))
        await ledger.release(pending.job_id, A)
        for job, status in ((running, "running"), (done, "completed"),
                            (waiting, "interrupted"), (pending, "pending|running")):
            before = await ledger.get(job.job_id)
            with pytest.raises(WrongJobState, match=status):
                await ledger.retry(job.job_id)
            assert await ledger.get(job.job_id) == before

    async def test_retry_of_a_job_cancelled_before_it_arrived_is_refused(
            self, ledger: JobLedger) -> None:
        await ledger.cancel("early", "before it came", keep_unknown=True)
        with pytest.raises(WrongJobState, match="before it arrived"):
            await ledger.retry("early")
        arrived = await ledger.claim(make_job("early"), "nats", A, LEASE)
        assert arrived.status == "cancelled"
        with pytest.raises(WrongJobState, match="before it arrived"):
            await ledger.retry("early")  # what arrived was never recorded to run

    async def test_concurrent_resumes_and_retries_each_take_effect_once(
            self, ledger: JobLedger) -> None:
        waiting, ended = make_job("waiting"), make_job("ended")
        for job in (waiting, ended):
            await ledger.claim(job, "http", A, LEASE)
        await ledger.interrupt(waiting.job_id, A, paused(waiting))
        await ledger.finish(ended.job_id, A, failed(ended))
        outcomes = await asyncio.gather(
            *(ledger.resume(waiting.job_id, approve()) for _ in range(10)),
            *(ledger.retry(ended.job_id) for _ in range(10)), return_exceptions=True)
        kinds = [type(o).__name__ for o in outcomes]
        assert (kinds[:10].count("JobRecord"), kinds[10:].count("JobRecord")) == (1, 1)
        assert kinds.count("WrongJobState") == 18, outcomes
        record = await ledger.get(ended.job_id)
        assert record is not None and (record.status, record.run) == ("pending", 2)

    async def test_marking_an_older_outcome_published_does_not_hide_the_newer_one(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        pause = await ledger.interrupt(job.job_id, A, paused(job))
        await ledger.resume(job.job_id, approve())
        await ledger.claim(job, "http", A, LEASE)
        ended = await ledger.finish(job.job_id, A, failed(job, attempts=2))
        await ledger.mark_published(job.job_id, pause.event_id)  # a slow outbox, late
        due = await eventually(lambda: _at_least(ledger.unpublished(0, 10), 1))
        assert due == [ended]
        await ledger.mark_published(job.job_id, ended.event_id)
        assert await ledger.unpublished(0, 10) == []
        await ledger.retry(job.job_id)
        await ledger.mark_published(job.job_id, ended.event_id)  # no outcome held: no-op
        await ledger.claim(job, "http", A, LEASE)
        again = await ledger.finish(job.job_id, A, replace(failed(job, attempts=3), run=2))
        assert again.event_id == "job-1:failed:2"
        await ledger.mark_published(job.job_id, ended.event_id)  # run 1's, not run 2's
        assert await eventually(lambda: _at_least(ledger.unpublished(0, 10), 1)) == [again]

    async def test_unpublished_lists_interrupts_with_results_oldest_first(
            self, ledger: JobLedger) -> None:
        done, waiting = make_job("done"), make_job("waiting")
        for job in (done, waiting):
            await ledger.claim(job, "http", A, LEASE)
        result = await ledger.finish(done.job_id, A, completed(done))
        pause = await ledger.interrupt(waiting.job_id, A, paused(waiting))
        assert await ledger.unpublished(3600, 10) == []
        due = await eventually(lambda: _at_least(ledger.unpublished(0, 10), 2))
        assert due == [result, pause]
        assert (due[1].status, due[1].interrupt_n, due[1].interrupt) == (
            "interrupted", 1, paused(waiting).interrupt)
        await ledger.mark_published(waiting.job_id, pause.event_id)
        assert await ledger.unpublished(0, 10) == [result]

    async def test_cancel_of_an_interrupted_job_ends_it_at_once(self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        pause = await ledger.interrupt(job.job_id, A, paused(job))
        await ledger.mark_published(job.job_id, pause.event_id)
        assert await ledger.unpublished(0, 10) == []
        record = await ledger.cancel(job.job_id, "nobody decides", keep_unknown=False)
        result = record.result
        assert result is not None and record.finished
        assert (record.status, result.status, result.reason, result.attempts, result.run,
                result.interrupt, result.event_id) == (
            "cancelled", "cancelled", "nobody decides", 1, 1, None, "job-1:cancelled")
        due = await eventually(lambda: _at_least(ledger.unpublished(0, 10), 1))
        assert due == [result]  # a new outcome: published anew
        assert (await ledger.claim(job, "nats", B, LEASE)).result == result
        with pytest.raises(WrongJobState):
            await ledger.resume(job.job_id, approve())
        with pytest.raises(JobFinished):
            await ledger.cancel(job.job_id, "again", keep_unknown=False)

    async def test_the_view_of_an_interrupted_job_shows_its_interrupt(
            self, ledger: JobLedger) -> None:
        job = make_job()
        await ledger.claim(job, "http", A, LEASE)
        await ledger.interrupt(job.job_id, A, paused(job))
        record = await ledger.get(job.job_id)
        assert record is not None
        view = record.to_data()
        assert (view["status"], view["finished_at"], view["interrupt"]) == (
            "interrupted", None, paused(job).interrupt)
        listed = (await ledger.list_jobs(JobQuery(frozenset({"interrupted"})))).records
        assert [r.job_id for r in listed] == [job.job_id]
        cancelled = await ledger.cancel(job.job_id, "stop", keep_unknown=False)
        view = cancelled.to_data()
        assert view["finished_at"] is not None and "interrupt" not in view


class LedgerContract(CoreContract, SteeringContract):
    """Tests every ledger must pass; subclasses provide the `ledger` fixture."""


# Rows an older ledger holds when it is upgraded: (job_id, status, run); `running`
# is held by A's live lease.
ROWS_BEFORE_STEERING = (("old-1", "completed", 1), ("old-2", "failed", 2),
                        ("old-running", "running", 1))


def result_before_steering(job_id: str, status: str, run: int) -> str | None:
    """The result JSON an older ledger stored for such a row (none while it runs)."""
    if status == "running":
        return None
    return json.dumps({"job_id": job_id, "trace_id": "t", "status": status, "attempts": 1,
                       "run": run, "finished_at": "2026-01-01T00:00:00+00:00"})


async def check_rows_from_before_steering(ledger: JobLedger) -> None:
    """The upgraded rows' results keep the event ids they went out with (the outbox
    marks them), a failed one is retried, the running one pauses and resumes."""
    due = await ledger.unpublished(0, 10)
    assert [r.event_id for r in due] == ["old-1:completed", "old-2:failed:2"]
    for result in due:
        await ledger.mark_published(result.job_id, result.event_id)
    assert await ledger.unpublished(0, 10) == []
    retried = await ledger.retry("old-2")
    assert (retried.run, retried.attempts, retried.run_attempts) == (3, 1, 0)
    running = make_job("old-running")
    pause = await ledger.interrupt(running.job_id, A, paused(running))
    assert pause.event_id == "old-running:interrupted:1"
    assert (await ledger.resume(running.job_id, approve())).status == "pending"
    claimed = await ledger.claim(running, "http", A, LEASE)
    assert (claimed.attempts, claimed.resume) == (2, approve())


def make_job_like(job: Job, content: str) -> Job:
    """`job` with other input: another fingerprint under the same job_id."""
    return Job(job.job_id, job.trace_id, job.agent_definition,
               {"messages": [{"role": "user", "content": content}]})


async def _at_least(results: Awaitable[list[JobResult]], n: int) -> list[JobResult] | None:
    found = await results
    return found if len(found) >= n else None


def _kinds(outcomes: list[Any]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for outcome in outcomes:
        if outcome is None:
            continue
        if isinstance(outcome, BaseException) and not isinstance(outcome, JobConflict):
            raise outcome
        kinds[type(outcome).__name__] = kinds.get(type(outcome).__name__, 0) + 1
    return kinds


async def _some_jobs(ledger: JobLedger, n: int) -> list[str]:
    """`n` jobs of both sources in every status a ledger can hold today."""
    ids: list[str] = []
    for i in range(n):
        job = make_job(f"list-{i:04d}")
        source = "nats" if i % 3 == 0 else "http"
        await ledger.claim(job, source, A, LEASE)
        if i % 4 == 1:
            await ledger.finish(job.job_id, A, completed(job))
        elif i % 4 == 2:
            await ledger.finish(job.job_id, A, failed(job))
        elif i % 8 == 3:
            await ledger.release(job.job_id, A)
        elif i % 8 == 7:
            await ledger.interrupt(job.job_id, A, paused(job))
        ids.append(job.job_id)
    return ids
