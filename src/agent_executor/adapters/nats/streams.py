"""JetStream streams and the consumer, created in the `local` profile when missing.

In `production` they come from deploy/claims/.../nats-stream.yaml; the
settings here mirror those files, so a local server behaves like production.
"""

from __future__ import annotations

import logging

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ReplayPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from agent_executor.adapters.config import NATS_STATUS_DUPLICATE_WINDOW_SECONDS, NatsSettings
from agent_executor.adapters.config import NATS_STATUS_STREAM_NAME as STATUS_STREAM

logger = logging.getLogger(__name__)

MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_ACK_PENDING = 1000
MAX_WAITING = 512


def intake_stream_config(settings: NatsSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream_name, subjects=[settings.subject],
        description="agent-executor job intake: JobExecutionEvent CloudEvents",
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        max_age=MAX_AGE_SECONDS, duplicate_window=NATS_STATUS_DUPLICATE_WINDOW_SECONDS)


def status_stream_config(settings: NatsSettings, name: str = STATUS_STREAM) -> StreamConfig:
    return StreamConfig(
        name=name, subjects=[f"{settings.status_subject_prefix}.*"],
        description="agent-executor results: completed and failed CloudEvents",
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=MAX_AGE_SECONDS,
        duplicate_window=NATS_STATUS_DUPLICATE_WINDOW_SECONDS)


def consumer_config(settings: NatsSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.consumer_group,
        description="agent-executor replicas: one durable pull consumer shared by all",
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_seconds, max_deliver=settings.max_deliver,
        filter_subject=settings.subject, replay_policy=ReplayPolicy.INSTANT,
        max_ack_pending=MAX_ACK_PENDING, max_waiting=MAX_WAITING)


async def ensure_local_streams(js: JetStreamContext, settings: NatsSettings, *,
                               status_stream: str = STATUS_STREAM) -> None:
    """Create the intake and status streams and the durable consumer where missing.

    Existing ones are left as they are (never edited: that is the deploy's job).
    """
    await _ensure_stream(js, intake_stream_config(settings))
    await _ensure_stream(js, status_stream_config(settings, status_stream))
    await ensure_consumer(js, settings)


async def ensure_consumer(js: JetStreamContext, settings: NatsSettings) -> None:
    try:
        await js.consumer_info(settings.stream_name, settings.consumer_group)
    except NotFoundError:
        await js.add_consumer(settings.stream_name, consumer_config(settings))
        logger.warning("created the JetStream consumer %s on %s (local profile)",
                       settings.consumer_group, settings.stream_name)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        logger.warning("created the JetStream stream %s on %s (local profile)",
                       config.name, ", ".join(config.subjects or []))
