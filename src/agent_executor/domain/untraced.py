"""The null tracer: what the use case runs with when tracing is off."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from agent_executor.domain.job import Job
from agent_executor.ports.tracing import JobSpan, JobTracer


class _Untraced:
    traceparent = None

    def ended(self, status: str) -> None:
        return None


class _NoTracer:
    """The null tracer: what the use case runs with when no tracer is wired."""

    def job_span(self, job: Job, *, source: str, run: int,
                 attempt: int) -> AbstractContextManager[JobSpan]:
        return nullcontext(_Untraced())


UNTRACED: JobTracer = _NoTracer()
