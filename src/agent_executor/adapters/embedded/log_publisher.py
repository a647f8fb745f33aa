from __future__ import annotations

import logging

from agent_executor.adapters.cloudevents_codec import EventNames, result_event_bytes
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.result import JobResult

logger = logging.getLogger(__name__)


class LoggingResultPublisher:
    """The `local` profile's result bus when NATS is not configured: one log line a result."""

    def __init__(self, names: EventNames, metrics: PrometheusMetrics) -> None:
        self._names = names
        self._metrics = metrics
        self.published = 0

    async def publish(self, result: JobResult) -> None:
        self.published += 1
        self._metrics.results_published_total.labels(status=result.status).inc()
        logger.info("result event (NATS not configured, logged only): %s",
                    result_event_bytes(result, self._names).decode()[:2000],
                    extra={"job_id": result.job_id, "trace_id": result.trace_id})
