from __future__ import annotations

import logging

from agent_executor.adapters.cloudevents_codec import EventNames, result_event_bytes
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.result import JobResult

logger = logging.getLogger(__name__)


class LoggingResultPublisher:
    """The `local` profile's result bus when NATS is not configured: one log line a result.

    User content stays out of INFO (CONTRACT section 1): the INFO line says which
    result it was and how big; the event itself is logged at DEBUG only.
    """

    def __init__(self, names: EventNames, metrics: PrometheusMetrics) -> None:
        self._names = names
        self._metrics = metrics
        self.published = 0

    async def publish(self, result: JobResult) -> None:
        self.published += 1
        self._metrics.results_published_total.labels(status=result.status).inc()
        event = result_event_bytes(result, self._names)
        log = {"job_id": result.job_id, "trace_id": result.trace_id}
        error = f", error {result.error.type}" if result.error is not None else ""
        logger.info("result %s (NATS not configured, logged only): %s%s, %d bytes, "
                    "attempt %d", result.event_id, result.status, error, len(event),
                    result.attempts, extra=log)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("result event: %s", event.decode(), extra=log)
