"""What the SQL ledgers (PostgreSQL, SQLite) record for a job cancelled before it
arrived, and the errors their steering statements raise when their WHERE clause
matched nothing (the row's state, read afterwards, says why)."""

from __future__ import annotations

from typing import Any

from agent_executor.domain.errors import AgentExecutorError, JobNotFound, WrongJobState


def tombstone(job_id: str) -> dict[str, Any]:
    """The job a cancel before its arrival records (no definition, no input): a
    delivery of it ends `cancelled` without running, and `retry` has nothing to run."""
    return {"job_id": job_id, "trace_id": "", "agent_definition": {}, "input_payload": {}}


def not_resumable(job_id: str, interrupt_id: str, status: str | None,
                  pending_id: str | None) -> AgentExecutorError:
    """Why a resume of `interrupt_id` found nothing to resume (`status` None: no job)."""
    if status is None:
        return JobNotFound(f"no job with id {job_id!r}")
    if status != "interrupted":
        return WrongJobState(f"job {job_id} is {status}, not interrupted: there is "
                             "nothing to resume")
    return WrongJobState(f"job {job_id} waits on interrupt {pending_id}, not "
                         f"{interrupt_id!r}")


def not_retryable(job_id: str, status: str | None, cancelled_early: bool
                  ) -> AgentExecutorError:
    """Why a retry found nothing to retry (`status` None: no job; `cancelled_early`:
    recorded by a cancel before it arrived)."""
    if status is None:
        return JobNotFound(f"no job with id {job_id!r}")
    if cancelled_early:
        return WrongJobState(f"job {job_id} was cancelled before it arrived: nothing is "
                             "recorded to run again")
    return WrongJobState(f"job {job_id} is {status}: only a failed or cancelled job can "
                         "be retried")
