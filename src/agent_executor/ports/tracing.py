from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from agent_executor.domain.job import Job


class JobSpan(Protocol):
    """The span of one job run, current while the run goes on (so what the run does
    nests under it and every log line of the job carries its ids)."""

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` naming this span (the result event carries it), or
        None when nothing is traced."""
        ...

    def ended(self, status: str) -> None:
        """The run's outcome (`completed`, `failed`, `cancelled`, `interrupted`)."""
        ...


class JobTracer(Protocol):
    """Opens the span of a job run (CONTRACT section 11). Never raises: tracing must
    not fail a job."""

    def job_span(self, job: Job, *, source: str, run: int,
                 attempt: int) -> AbstractContextManager[JobSpan]:
        """A span continuing `job.traceparent`, else in the trace whose id is the job's
        `trace_id` when that is 32 hex digits, else in a new trace."""
        ...

