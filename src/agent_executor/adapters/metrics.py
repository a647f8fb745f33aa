"""Prometheus metrics (CONTRACT section 8), one registry per process.

Every adapter that counts something gets this object by constructor; nothing
registers into the global default registry, so tests build their own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

PREFIX = "agent_executor_"
# Agent jobs last from well under a second (scripted) to tens of minutes.
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PrometheusMetrics:
    """Implements the `JobMetrics` port and holds every other metric of the service."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_total = Counter(f"{PREFIX}jobs_total", "Job attempts that ended, by outcome",
                                  ["status", "source"], registry=r)
        self.job_duration_seconds = Histogram(
            f"{PREFIX}job_duration_seconds", "Time one job attempt spent running",
            ["status"], buckets=JOB_BUCKETS, registry=r)
        self.jobs_in_progress = Gauge(f"{PREFIX}jobs_in_progress", "Jobs running now",
                                      registry=r)
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
        self.results_published_total = Counter(
            f"{PREFIX}results_published_total", "Result events published", ["status"],
            registry=r)

    # JobMetrics port
    def job_started(self, source: str) -> None:
        self.jobs_in_progress.inc()

    def job_finished(self, source: str, status: str, duration_seconds: float | None) -> None:
        self.jobs_in_progress.dec()
        self.jobs_total.labels(status=status, source=source).inc()
        if duration_seconds is not None:
            self.job_duration_seconds.labels(status=status).observe(duration_seconds)

    def job_interrupted(self, source: str) -> None:
        self.interrupts_total.labels(source=source).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
