"""`NatsResultPublisher`: result CloudEvents to `{prefix}.completed|failed` on JetStream."""

from __future__ import annotations

import logging

import nats

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.config import NatsSettings
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.codec import result_message
from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.result import JobResult

logger = logging.getLogger(__name__)


class NatsResultPublisher:
    """Implements `ResultPublisher`: structured mode, `Nats-Msg-Id: {job_id}:{status}`,
    returns once JetStream acknowledged (stored, or recognised as a duplicate)."""

    def __init__(self, connection: NatsConnection, settings: NatsSettings, names: EventNames,
                 metrics: PrometheusMetrics, *, timeout_seconds: float = 5.0) -> None:
        self._connection = connection
        self._prefix = settings.status_subject_prefix
        self._names = names
        self._metrics = metrics
        self._timeout = timeout_seconds

    async def publish(self, result: JobResult) -> None:
        message = result_message(result, self._names, self._prefix)
        log = {"job_id": result.job_id, "trace_id": result.trace_id}
        try:
            ack = await self._connection.js.publish(message.subject, message.body,
                                                    timeout=self._timeout,
                                                    headers=dict(message.headers))
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise DependencyUnavailable(
                f"NATS did not take the {result.status} result on {message.subject}: "
                f"{type(exc).__name__}: {exc}") from exc
        self._metrics.results_published_total.labels(status=result.status).inc()
        if ack.duplicate:
            logger.info("result %s was already on %s (duplicate dropped by JetStream)",
                        result.event_id, ack.stream, extra=log)
        else:
            logger.debug("result %s stored in %s #%d", result.event_id, ack.stream, ack.seq,
                         extra=log)
