"""`JobTracer` on the OpenTelemetry SDK, exporting OTLP/HTTP.

The SDK reads the standard variables itself (`OTEL_EXPORTER_OTLP_*`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_SERVICE_NAME`). The provider is this service's own (not the global one),
so tests can run several; spans are made current through the context API, so
whatever runs in the job's task nests under its span and logs its ids.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agent_executor.domain.job import Job
from agent_executor.ports.tracing import JobSpan

INSTRUMENTATION = "agent_executor"
JOB_SPAN = "agent_executor.job"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_PROPAGATOR = TraceContextTextMapPropagator()
_FORCED_TRACE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "agent_executor_forced_trace_id", default=None)


class _JobTraceIds(RandomIdGenerator):
    """Random ids, except a new trace's id while a job asks for its own `trace_id`."""

    def generate_trace_id(self) -> int:
        forced = _FORCED_TRACE_ID.get()
        return forced if forced is not None else super().generate_trace_id()


def tracer_provider(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting in batches to `exporter` (default: OTLP/HTTP as the
    `OTEL_EXPORTER_OTLP_*` variables say)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter()
    resource = Resource.create({"service.name": service_name})
    provider = TracerProvider(resource=resource, id_generator=_JobTraceIds())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def traceparent_of(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    # version 00 defines only the sampled flag (the SDK may set W3C level 2's random one)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags & 1:02x}"


def parent_context(traceparent: str | None) -> Context | None:
    """The remote parent a valid W3C `traceparent` names, else None."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    parent = trace.get_current_span(context).get_span_context()
    return context if parent.is_valid else None


class _OtelJobSpan:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.status: str | None = None

    @property
    def traceparent(self) -> str | None:
        return traceparent_of(self.span)

    def ended(self, status: str) -> None:
        self.status = status
        self.span.set_attribute("status", status)
        if status == "failed":
            self.span.set_status(StatusCode.ERROR, "the job failed")


class OtelJobTracer:
    """`JobTracer`; `provider` owned by the caller (shut down at exit to flush)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION)

    def job_span(self, job: Job, *, source: str, run: int,
                 attempt: int) -> AbstractContextManager[JobSpan]:
        return self._job_span(job, source, run, attempt)

    @contextmanager
    def _job_span(self, job: Job, source: str, run: int, attempt: int) -> Iterator[JobSpan]:
        parent = parent_context(job.traceparent)
        forced = None
        if parent is None:
            trace_id = job.trace_id.lower().replace("-", "")
            if _HEX32.match(trace_id) and trace_id != "0" * 32:
                forced = _FORCED_TRACE_ID.set(int(trace_id, 16))
        attributes: dict[str, Any] = {"job_id": job.job_id, "trace_id": job.trace_id,
                                      "run": run, "attempt": attempt, "source": source}
        try:
            span = self.tracer.start_span(JOB_SPAN, context=parent or Context(),
                                          kind=SpanKind.CONSUMER, attributes=attributes)
        finally:
            if forced is not None:
                _FORCED_TRACE_ID.reset(forced)
        handle = _OtelJobSpan(span)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True,
                                set_status_on_exception=True):
                yield handle
        finally:
            if handle.status is None:
                span.set_attribute("status", "unfinished")
            span.end()
