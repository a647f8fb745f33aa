"""The result publish as a child of the job span that produced the result."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agent_executor.adapters.otel.tracer import parent_context
from agent_executor.domain.result import JobResult
from agent_executor.ports.publisher import ResultPublisher

PUBLISH_SPAN = "agent_executor.result.publish"


class TracedResultPublisher:
    """`ResultPublisher` around another; a result without a job span is published
    untraced (one delivered again after a restart is a child of its old span)."""

    def __init__(self, inner: ResultPublisher, tracer: trace.Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def publish(self, result: JobResult) -> None:
        parent = parent_context(result.traceparent)
        if parent is None:
            await self._inner.publish(result)
            return
        with self._tracer.start_as_current_span(
                PUBLISH_SPAN, context=parent, kind=SpanKind.PRODUCER,
                attributes={"job_id": result.job_id, "status": result.status,
                            "event_id": result.event_id}):
            await self._inner.publish(result)
