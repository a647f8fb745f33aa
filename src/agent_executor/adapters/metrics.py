"""Prometheus metrics (CONTRACT section 8), one registry per process.

Every adapter that counts something gets this object by constructor; nothing
registers into the global default registry, so tests build their own.

Bounded labels: `model` is a job's choice (any string its definition names), so
the first `MAX_MODEL_LABELS` distinct models that answered a call successfully
get their own label and every other is counted as `other`; `provider` is one of
the providers the definition reader accepts; `tool` is the name of a tool the
agent really has (the operator installs them), `unknown` for a name a model
made up; `error_type` is a failure class of the domain.

With `WORKERS` > 1 every worker process records into prometheus-client's
multiprocess files (the supervisor sets `PROMETHEUS_MULTIPROC_DIR` before a
worker starts, which is when prometheus-client chooses its value store), and a
scrape, whichever worker answers it, reads every worker's files: counters and
histograms summed over every worker that ever ran (a restarted one's counts
stay), the in-flight gauges summed over the live ones (`livesum`; the
supervisor removes a dead worker's). The model-label bound applies per worker.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "agent_executor_"
# Agent jobs last from well under a second (scripted) to tens of minutes.
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A model call: tens of ms (scripted, cached) to many minutes (long reasoning).
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
MAX_MODEL_LABELS = 50
OTHER = "other"


class PrometheusMetrics:
    """Implements the `JobMetrics` port and holds every other metric of the service."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 multiprocess_dir: str | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._exposed = r  # what a scrape reads: this process, or every worker's files
        if multiprocess_dir is not None:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self.jobs_total = Counter(f"{PREFIX}jobs_total", "Job attempts that ended, by outcome",
                                  ["status", "source"], registry=r)
        self.job_duration_seconds = Histogram(
            f"{PREFIX}job_duration_seconds", "Time one job attempt spent running",
            ["status"], buckets=JOB_BUCKETS, registry=r)
        self.jobs_in_progress = Gauge(f"{PREFIX}jobs_in_progress", "Jobs running now",
                                      registry=r, multiprocess_mode="livesum")
        self.nats_messages_received_total = Counter(
            f"{PREFIX}nats_messages_received_total", "Job messages fetched from NATS",
            registry=r)
        self.nats_messages_processed_total = Counter(
            f"{PREFIX}nats_messages_processed_total", "Job messages settled, by outcome",
            ["outcome"], registry=r)
        self.nats_messages_failed_total = Counter(
            f"{PREFIX}nats_messages_failed_total",
            "Job messages that could not be processed (invalid, or dependencies down)",
            registry=r)
        self.nats_redeliveries_total = Counter(
            f"{PREFIX}nats_redeliveries_total", "Job messages delivered more than once",
            registry=r)
        self.stream_events_published_total = Counter(
            f"{PREFIX}stream_events_published_total", "Stream events published",
            ["event_type"], registry=r)
        self.stream_publish_errors_total = Counter(
            f"{PREFIX}stream_publish_errors_total", "Stream events lost to a publish error",
            registry=r)
        self.http_requests_total = Counter(
            f"{PREFIX}http_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=r)
        self.http_request_duration_seconds = Histogram(
            f"{PREFIX}http_request_duration_seconds", "HTTP request latency",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        self.interrupts_total = Counter(
            f"{PREFIX}interrupts_total", "Runs paused for a human decision", ["source"],
            registry=r)
        self.job_failures_total = Counter(
            f"{PREFIX}job_failures_total", "Jobs that ended failed, by error type",
            ["error_type"], registry=r)
        self.jobs_waiting = Gauge(
            f"{PREFIX}jobs_waiting", "Jobs claimed and waiting for a free slot", registry=r,
            multiprocess_mode="livesum")
        self.llm_requests_total = Counter(
            f"{PREFIX}llm_requests_total", "Model calls, by outcome (after retries)",
            ["provider", "model", "outcome"], registry=r)
        self.llm_request_duration_seconds = Histogram(
            f"{PREFIX}llm_request_duration_seconds", "Time one model call took (with retries)",
            ["provider"], buckets=LLM_BUCKETS, registry=r)
        self.llm_tokens_total = Counter(
            f"{PREFIX}llm_tokens_total", "Tokens the providers reported, by kind",
            ["provider", "model", "kind"], registry=r)
        self.tool_calls_total = Counter(
            f"{PREFIX}tool_calls_total", "Tool calls, by status", ["tool", "status"],
            registry=r)
        self._models: set[tuple[str, str]] = set()
        self.results_published_total = Counter(
            f"{PREFIX}results_published_total", "Result events published", ["status"],
            registry=r)

    # JobMetrics port
    def job_started(self, source: str) -> None:
        self.jobs_in_progress.inc()

    def job_finished(self, source: str, status: str, duration_seconds: float | None,
                     error_type: str | None = None) -> None:
        self.jobs_in_progress.dec()
        if status == "failed":
            self.job_failures_total.labels(error_type=error_type or "unknown").inc()
        self.jobs_total.labels(status=status, source=source).inc()
        if duration_seconds is not None:
            self.job_duration_seconds.labels(status=status).observe(duration_seconds)

    def job_interrupted(self, source: str) -> None:
        self.interrupts_total.labels(source=source).inc()

    def job_waiting(self, delta: int) -> None:
        self.jobs_waiting.inc(delta)

    # AgentMetrics port
    def model_call(self, provider: str, model: str, outcome: str, duration_seconds: float,
                   input_tokens: int, output_tokens: int) -> None:
        label = self._model_label(provider, model, outcome == "success")
        self.llm_requests_total.labels(provider=provider, model=label, outcome=outcome).inc()
        self.llm_request_duration_seconds.labels(provider=provider).observe(duration_seconds)
        if input_tokens:
            self.llm_tokens_total.labels(provider=provider, model=label,
                                         kind="input").inc(input_tokens)
        if output_tokens:
            self.llm_tokens_total.labels(provider=provider, model=label,
                                         kind="output").inc(output_tokens)

    def tool_call(self, tool: str, status: str) -> None:
        self.tool_calls_total.labels(tool=tool, status=status).inc()

    def _model_label(self, provider: str, model: str, answered: bool) -> str:
        key = (provider, model)
        if key in self._models:
            return model
        if answered and len(self._models) < MAX_MODEL_LABELS:
            self._models.add(key)
            return model
        return OTHER

    def exposition(self) -> bytes:
        return generate_latest(self._exposed)
