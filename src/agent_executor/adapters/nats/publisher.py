"""`NatsResultPublisher`: result CloudEvents to `{prefix}.{status}` on JetStream, and
rejections of unreadable messages to `{prefix}.rejected`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from agent_executor.adapters.cloudevents_codec import STRUCTURED_CONTENT_TYPE, EventNames
from agent_executor.adapters.config import NatsSettings
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.codec import MSG_ID_HEADER, NatsMessage, result_message
from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.delivery import nats_errors
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.result import JobResult

logger = logging.getLogger(__name__)

# Room for the headers and the subject beside the body.
HEADROOM_BYTES = 4096
REJECTED = "rejected"


class NatsResultPublisher:
    """Implements `ResultPublisher`: structured mode, `Nats-Msg-Id` the event id,
    returns once JetStream acknowledged (stored, or recognised as a duplicate).

    A result larger than the server's `max_payload` (or `max_event_bytes`) goes out
    without its conversation and files, pointing at `result_url` (CONTRACT section 6):
    never lost, never replaced by a `failed` one because of its size."""

    def __init__(self, connection: NatsConnection, settings: NatsSettings, names: EventNames,
                 metrics: PrometheusMetrics, *, timeout_seconds: float = 5.0,
                 max_event_bytes: int | None = None) -> None:
        self._connection = connection
        self._prefix = settings.status_subject_prefix
        self._names = names
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._max_event_bytes = max_event_bytes

    async def publish(self, result: JobResult) -> None:
        message = result_message(result, self._names, self._prefix)
        limit = self._limit()
        if len(message.body) > limit:
            message = result_message(result, self._names, self._prefix, truncated=True)
            if len(message.body) > limit and result.output is not None:  # a huge output
                cut = dataclasses.replace(result.output,
                                          output=result.output.output[:limit // 8])
                message = result_message(dataclasses.replace(result, output=cut),
                                         self._names, self._prefix, truncated=True)
            logger.info("result of %d bytes is over the bus's %d: published without its "
                        "messages and files (whole in the ledger)", len(message.body), limit,
                        extra={"job_id": result.job_id, "trace_id": result.trace_id})
        await self._send(message, f"the {result.status} result",
                         {"job_id": result.job_id, "trace_id": result.trace_id})
        self._metrics.results_published_total.labels(status=result.status).inc()

    async def publish_rejection(self, event_id: str, error: InvalidJob,
                                job_id: str | None) -> None:
        """A `{prefix}.rejected` event for a message that is not a valid job. Never a
        job's result: its id is the message's, not the job's (CONTRACT section 5)."""
        data: dict[str, Any] = {"error": {"type": "InvalidJob", "message": error.message[:2000],
                                          "details": [d[:500] for d in error.details[:50]]}}
        if job_id is not None:
            data["job_id"] = job_id
        event = CloudEvent({"id": event_id, "source": self._names.source,
                            "type": f"{self._names.type_prefix}.{REJECTED}",
                            "time": datetime.now(UTC), "datacontenttype": "application/json"},
                           data)
        body = JSONFormat().write(event)
        message = NatsMessage(f"{self._prefix}.{REJECTED}",
                              {"Content-Type": STRUCTURED_CONTENT_TYPE, MSG_ID_HEADER: event_id},
                              body)
        await self._send(message, "a rejection", {"job_id": job_id} if job_id else {})
        self._metrics.results_published_total.labels(status=REJECTED).inc()

    def _limit(self) -> int:
        limit = self._connection.max_payload - HEADROOM_BYTES
        if self._max_event_bytes is not None:
            limit = min(limit, self._max_event_bytes)
        return limit

    async def _send(self, message: NatsMessage, what: str, log: Mapping[str, Any]) -> None:
        with nats_errors(f"did not take {what} on {message.subject}"):
            ack = await self._connection.js.publish(message.subject, message.body,
                                                    timeout=self._timeout,
                                                    headers=dict(message.headers))
        event_id = message.headers[MSG_ID_HEADER]
        if ack.duplicate:
            logger.info("%s was already on %s (duplicate dropped by JetStream)", event_id,
                        ack.stream, extra=log)
        else:
            logger.debug("%s stored in %s #%d", event_id, ack.stream, ack.seq, extra=log)
