"""The outcome of a job: what is recorded, returned and published (CONTRACT section 6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agent_executor.domain.errors import JobFailure
from agent_executor.domain.interrupts import Resume
from agent_executor.domain.usage import Usage

JobStatus = Literal["pending", "running", "interrupted", "completed", "failed", "cancelled"]
ResultStatus = Literal["completed", "failed", "cancelled", "interrupted"]
"""A run's outcome; `interrupted` is the one that is not final (CONTRACT section 2a)."""
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class AgentOutput:
    """What a finished agent run leaves: the last AI text, the files, the conversation."""

    output: str
    files: Mapping[str, str] = field(default_factory=dict)
    messages: list[Mapping[str, Any]] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        return {"output": self.output, "files": dict(self.files),
                "messages": [dict(m) for m in self.messages]}


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    retryable: bool = False

    @classmethod
    def from_failure(cls, failure: JobFailure) -> ErrorInfo:
        return cls(failure.error_type, failure.message, failure.retryable)

    def to_data(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "retryable": self.retryable}


@dataclass(frozen=True)
class JobResult:
    job_id: str
    trace_id: str
    status: ResultStatus
    attempts: int
    finished_at: datetime
    output: AgentOutput | None = None
    error: ErrorInfo | None = None
    duration_ms: int | None = None
    reason: str | None = None  # cancelled
    run: int = 1
    interrupt: Mapping[str, Any] | None = None  # interrupted: the on_interrupt data
    interrupt_n: int = 0  # interrupted: the n-th interrupt of the job (the ledger counts)
    usage: Usage | None = None  # what the job's thread spent, over all its runs
    traceparent: str | None = None  # the job span that produced it, when traced

    @property
    def event_id(self) -> str:
        """`{job_id}:{status}` for the first run, `{job_id}:{status}:{run}` after;
        `{job_id}:interrupted:{n}` for the job's n-th interrupt."""
        if self.status == "interrupted":
            return f"{self.job_id}:interrupted:{self.interrupt_n}"
        return f"{self.job_id}:{self.status}" if self.run == 1 else \
            f"{self.job_id}:{self.status}:{self.run}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def completed(cls, job_id: str, trace_id: str, attempts: int, output: AgentOutput,
                  duration_ms: int) -> JobResult:
        return cls(job_id, trace_id, "completed", attempts, datetime.now(UTC),
                   output=output, duration_ms=duration_ms)

    @classmethod
    def failed(cls, job_id: str, trace_id: str, attempts: int, error: ErrorInfo,
               duration_ms: int | None = None) -> JobResult:
        return cls(job_id, trace_id, "failed", attempts, datetime.now(UTC),
                   error=error, duration_ms=duration_ms)

    @classmethod
    def cancelled(cls, job_id: str, trace_id: str, attempts: int, reason: str,
                  duration_ms: int | None = None) -> JobResult:
        return cls(job_id, trace_id, "cancelled", attempts, datetime.now(UTC),
                   reason=reason, duration_ms=duration_ms)

    @classmethod
    def interrupted(cls, job_id: str, trace_id: str, attempts: int,
                    interrupt: Mapping[str, Any], run: int = 1) -> JobResult:
        """A paused run; the ledger numbers it (`interrupt_n`) when recording it."""
        return cls(job_id, trace_id, "interrupted", attempts, datetime.now(UTC),
                   interrupt=dict(interrupt), run=run)

    def to_data(self, *, truncated: bool = False) -> dict[str, Any]:
        """The result CloudEvent's `data`. `truncated`: without the conversation and
        the files, pointing at `result_url` instead (CONTRACT section 6: a result too
        large for the bus is published like this, whole in the ledger)."""
        data: dict[str, Any] = {"job_id": self.job_id, "trace_id": self.trace_id,
                                "status": self.status}
        if self.output is not None:
            data["result"] = ({"output": self.output.output} if truncated
                              else self.output.to_data())
        if truncated:
            data["result_truncated"] = True
            data["result_url"] = f"/jobs/{self.job_id}"
        if self.error is not None:
            data["error"] = self.error.to_data()
        if self.reason is not None:
            data["reason"] = self.reason
        if self.interrupt is not None:
            data["interrupt"] = dict(self.interrupt)
        data["attempts"] = self.attempts
        data["run"] = self.run
        if self.duration_ms is not None:
            data["duration_ms"] = self.duration_ms
        if self.usage is not None:
            data["usage"] = self.usage.to_data()
        return data

    def to_record(self) -> dict[str, Any]:
        """`to_data` plus the finish time: what a ledger stores to return it unchanged."""
        record = {**self.to_data(), "finished_at": self.finished_at.isoformat()}
        if self.status == "interrupted":
            record["interrupt_n"] = self.interrupt_n
        if self.traceparent is not None:
            record["traceparent"] = self.traceparent
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobResult:
        result = record.get("result")
        error = record.get("error")
        return cls(
            job_id=record["job_id"], trace_id=record["trace_id"], status=record["status"],
            attempts=int(record["attempts"]),
            finished_at=datetime.fromisoformat(record["finished_at"]),
            output=AgentOutput(result["output"], result.get("files", {}),
                               result.get("messages", [])) if result else None,
            error=ErrorInfo(error["type"], error["message"], bool(error.get("retryable")))
            if error else None,
            duration_ms=record.get("duration_ms"), reason=record.get("reason"),
            run=int(record.get("run", 1)), interrupt=record.get("interrupt"),
            interrupt_n=int(record.get("interrupt_n", 0)),
            usage=Usage.from_data(record["usage"]) if record.get("usage") else None,
            traceparent=record.get("traceparent"),
        )


@dataclass(frozen=True)
class JobRecord:
    """One job in the ledger."""

    job_id: str
    trace_id: str
    status: JobStatus
    attempts: int
    source: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    result: JobResult | None = None
    run: int = 1
    cancel_reason: str | None = None  # a cancel was asked for while it ran
    resume: Resume | None = None  # decisions recorded, not yet applied by a run
    run_attempts: int | None = None  # attempts of this run (None: all of them)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def settled(self) -> JobResult | None:
        """What a delivery of this job gets without running it: the finished job's
        result, or the interrupted job's pending interrupt; None when it may run."""
        if self.result is not None and (self.finished or self.status == "interrupted"):
            return self.result
        return None

    @property
    def attempts_this_run(self) -> int:
        return self.attempts if self.run_attempts is None else self.run_attempts

    def to_data(self) -> dict[str, Any]:
        """The `GET /jobs/{job_id}` view."""
        data: dict[str, Any] = {"job_id": self.job_id, "trace_id": self.trace_id,
                                "status": self.status, "attempts": self.attempts,
                                "run": self.run, "source": self.source,
                                "created_at": self.created_at.isoformat(),
                                "updated_at": self.updated_at.isoformat(),
                                "finished_at": self.result.finished_at.isoformat()
                                if self.result is not None and self.finished else None}
        if self.result is not None and self.result.output is not None:
            data["result"] = self.result.output.to_data()
        if self.result is not None and self.result.error is not None:
            data["error"] = self.result.error.to_data()
        if self.result is not None and self.result.reason is not None:
            data["reason"] = self.result.reason
        if self.finished and self.result is not None and self.result.usage is not None:
            data["usage"] = self.result.usage.to_data()
        if self.status == "interrupted" and self.result is not None \
                and self.result.interrupt is not None:
            data["interrupt"] = dict(self.result.interrupt)
        return data
