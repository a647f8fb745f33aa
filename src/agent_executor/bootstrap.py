"""The composition root: the only module that imports adapters.

`Container` wires adapters to ports by profile: each backing service that is
configured gets its production adapter (PostgreSQL, Dragonfly, NATS); in the
`local` profile each one that is not falls back to an embedded adapter
(SQLite under AGENT_EXECUTOR_DATA_DIR, an in-process bus, a logging result
publisher). Adapters that own connections are `Resource`s, opened in
`RESOURCE_ORDER` and closed in reverse by `open_service`. What the process does
with them (serve, run, prune; signals, exit codes) is `adapters/process.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_executor.adapters import config as cfg
from agent_executor.adapters import process
from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.embedded.cancel_broadcast import InProcessCancelBroadcast
from agent_executor.adapters.embedded.event_stream import (
    InProcessReadinessProbe,
)
from agent_executor.adapters.embedded.log_publisher import LoggingResultPublisher
from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger, SqliteReadinessProbe
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.langgraph.runtime import LangGraphAgentRuntime
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.postgres.checkpointer import PostgresCheckpointStore
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.adapters.postgres.probe import PostgresReadinessProbe
from agent_executor.adapters.workers.board import WorkerSlot, WorkersReadinessProbe
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.health import ProbeResult
from agent_executor.domain.untraced import UNTRACED
from agent_executor.domain.usage import Limits
from agent_executor.ports.events import EventStream
from agent_executor.ports.health import ReadinessProbe
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.publisher import ResultPublisher
from agent_executor.ports.signals import CancelBroadcast
from agent_executor.ports.tracing import JobTracer

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from agent_executor.adapters.otel.tracer import OtelJobTracer

logger = logging.getLogger(__name__)
SQLITE_CHECKPOINTS = "checkpoints.sqlite"


# Resources: opened in RESOURCE_ORDER, closed in reverse (see open_resources).

async def _tracing(settings: cfg.Settings) -> AsyncIterator[OtelJobTracer | None]:
    """OTLP traces when an endpoint is set; else None: no SDK, no span, no handler."""
    if not settings.tracing:
        yield None
        return
    from agent_executor.adapters.otel.tracer import OtelJobTracer, tracer_provider
    provider = tracer_provider(settings.otel_service_name)
    logger.info("exporting traces over OTLP/HTTP as service %s", settings.otel_service_name)
    try:
        yield OtelJobTracer(provider)
    finally:  # flushes what is still batched
        await asyncio.to_thread(provider.shutdown)


async def _ledger(settings: cfg.Settings) -> AsyncIterator[JobLedger]:
    ledger: PostgresJobLedger | SqliteJobLedger
    if settings.postgres is not None:
        ledger = await PostgresJobLedger.create(settings.postgres)
    else:
        ledger = await SqliteJobLedger.in_data_dir(settings.data_dir)
    try:
        yield ledger
    finally:
        await ledger.aclose()


async def _checkpointer(settings: cfg.Settings) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if settings.postgres is not None:
        store = await PostgresCheckpointStore.open(
            settings.postgres, max_concurrent_jobs=settings.max_concurrent_jobs)
        try:
            yield store.saver
        finally:
            await store.aclose()
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = str(settings.data_dir / SQLITE_CHECKPOINTS)
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        yield saver


async def _event_stream(settings: cfg.Settings,
                        metrics: PrometheusMetrics) -> AsyncIterator[EventStream]:
    if settings.dragonfly is not None:
        from agent_executor.adapters.dragonfly.event_stream import DragonflyEventStream
        stream = DragonflyEventStream.from_settings(settings.dragonfly, metrics)
        try:
            yield stream
        finally:
            await stream.aclose()
        return
    from agent_executor.adapters.embedded.sqlite_event_stream import SqliteEventStream
    embedded = await SqliteEventStream.in_data_dir(settings.data_dir, metrics)
    try:
        yield embedded
    finally:
        await embedded.aclose()


async def _broadcast(settings: cfg.Settings) -> AsyncIterator[CancelBroadcast]:
    if settings.dragonfly is None:
        yield InProcessCancelBroadcast()
        return
    from agent_executor.adapters.dragonfly.cancel_broadcast import DragonflyCancelBroadcast
    broadcast = DragonflyCancelBroadcast.from_settings(settings.dragonfly)
    try:
        yield broadcast
    finally:
        await broadcast.aclose()


async def _nats(settings: cfg.Settings) -> AsyncIterator[Any]:
    if settings.nats is None:
        yield None
        return
    from agent_executor.adapters.nats.connection import NatsConnection
    connection = await NatsConnection.connect(settings.nats)
    try:
        yield connection
    finally:
        await connection.aclose()


def _publisher(settings: cfg.Settings, nats: Any, names: EventNames,
               metrics: PrometheusMetrics, tracing: OtelJobTracer | None) -> ResultPublisher:
    publisher: ResultPublisher
    if nats is None:
        publisher = LoggingResultPublisher(names, metrics)
    else:
        from agent_executor.adapters.nats.publisher import NatsResultPublisher
        assert settings.nats is not None
        publisher = NatsResultPublisher(nats, settings.nats, names, metrics,
                                        max_event_bytes=settings.max_event_bytes)
    if tracing is None:
        return publisher
    from agent_executor.adapters.otel.publisher import TracedResultPublisher
    return TracedResultPublisher(publisher, tracing.tracer)


def _job_tracer(tracing: OtelJobTracer | None) -> JobTracer:
    return tracing if tracing is not None else UNTRACED


def _runtime(checkpointer: BaseCheckpointSaver[Any], settings: cfg.Settings,
             metrics: PrometheusMetrics, tracing: OtelJobTracer | None) -> LangGraphAgentRuntime:
    callbacks = None
    if tracing is not None:
        from agent_executor.adapters.otel.callbacks import callbacks_for
        callbacks = functools.partial(callbacks_for, tracing.tracer)
    return LangGraphAgentRuntime(
        checkpointer, settings, metrics=metrics, callbacks=callbacks,
        default_limits=Limits(settings.job_max_model_calls, settings.job_max_total_tokens))


def _consumer(settings: cfg.Settings, nats: Any, execute: ExecuteJob, names: EventNames,
              metrics: PrometheusMetrics) -> Any:
    if nats is None or settings.nats is None:
        return None
    from agent_executor.adapters.nats.consumer import NatsJobConsumer
    return NatsJobConsumer(nats, execute, settings.nats, names, metrics,
                           grace_seconds=settings.shutdown_grace_seconds,
                           create_streams=settings.profile == "local",
                           max_event_bytes=settings.max_event_bytes)


def _probes(settings: cfg.Settings, ledger: JobLedger, events: EventStream, nats: Any,
            consumer: Any) -> list[ReadinessProbe]:
    probes: list[ReadinessProbe] = []
    if isinstance(ledger, PostgresJobLedger):
        probes.append(PostgresReadinessProbe(ledger.pool, ledger.schema))
    elif isinstance(ledger, SqliteJobLedger):
        probes.append(SqliteReadinessProbe(ledger))
    if settings.dragonfly is not None:
        from agent_executor.adapters.dragonfly.probe import DragonflyReadinessProbe
        probes.append(DragonflyReadinessProbe(events))
    else:
        probes.append(InProcessReadinessProbe())
    if consumer is not None:
        from agent_executor.adapters.nats.probe import NatsReadinessProbe
        probes.append(NatsReadinessProbe(nats, consumer))
    else:
        probes.append(_HttpOnlyProbe())
    return probes


def _app_probes(probes: list[ReadinessProbe], worker: WorkerSlot | None) -> list[ReadinessProbe]:
    """`/ready`'s checks: this process's own, and with workers every other worker's."""
    if worker is None:
        return probes
    return [*probes, WorkersReadinessProbe(worker.board, worker.index)]


def _metrics(worker: WorkerSlot | None) -> PrometheusMetrics:
    return PrometheusMetrics(multiprocess_dir=None if worker is None else worker.metrics_dir)


class _HttpOnlyProbe:
    """NATS not configured (local profile): jobs come over HTTP only."""

    name = "nats"

    async def check(self) -> ProbeResult:
        return ProbeResult(ok=True, embedded=True, detail="NATS_URL not set: HTTP intake only")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=cfg.Settings)
    # a WorkerSlot when this process is one of the supervisor's (WORKERS > 1)
    worker: providers.Object[WorkerSlot | None] = providers.Object(None)
    metrics = providers.Singleton(_metrics, worker)
    names = providers.Singleton(EventNames, source=settings.provided.cloudevent_source,
                                type_prefix=settings.provided.cloudevent_type_prefix)
    tracing = providers.Resource(_tracing, settings)
    ledger = providers.Resource(_ledger, settings)
    checkpointer = providers.Resource(_checkpointer, settings)
    events = providers.Resource(_event_stream, settings, metrics)
    broadcast = providers.Resource(_broadcast, settings)
    nats = providers.Resource(_nats, settings)
    publisher = providers.Singleton(_publisher, settings, nats, names, metrics, tracing)
    runtime = providers.Singleton(_runtime, checkpointer, settings, metrics, tracing)
    execute = providers.Singleton(
        ExecuteJob, ledger, runtime, events, publisher, metrics, owner=providers.Callable(_owner),
        max_concurrent=settings.provided.max_concurrent_jobs,
        job_timeout_seconds=settings.provided.job_timeout_seconds,
        lease_seconds=settings.provided.job_lease_seconds,
        max_attempts=settings.provided.max_job_attempts, broadcast=broadcast,
        tracer=providers.Callable(_job_tracer, tracing))
    background = providers.Singleton(BackgroundJobs, execute, ledger)
    consumer = providers.Singleton(_consumer, settings, nats, execute, names, metrics)
    probes = providers.Singleton(_probes, settings, ledger, events, nats, consumer)
    app = providers.Singleton(
        create_app, execute=execute, background=background, ledger=ledger, events=events,
        probes=providers.Singleton(_app_probes, probes, worker), metrics=metrics, names=names,
        max_event_bytes=settings.provided.max_event_bytes,
        cors_allow_origins=settings.provided.cors_allow_origins,
        api_tokens=settings.provided.api_tokens)


# Opened one by one in this order, closed in the reverse order: the stores before
# NATS, so no job arrives before what it needs is open, and NATS closes first;
# tracing opens first and closes last, flushing the spans of the jobs' ends.
# Every `Resource` of the Container is listed here (a unit test checks it).
RESOURCE_ORDER: tuple[str, ...] = ("tracing", "ledger", "checkpointer", "events", "broadcast",
                                   "nats")


async def _get(provider: Any) -> Any:
    value = provider()
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def open_resources(container: containers.Container,
                         order: Sequence[str]) -> AsyncIterator[None]:
    """Open each `Resource` in `order`, close them in reverse (also when one fails to
    open). dependency-injector's own `init_resources` opens them in attribute-name
    order and `shutdown_resources` closes them all at once: neither is used."""
    declared = {name for name, provider in container.providers.items()
                if isinstance(provider, providers.Resource)}
    if declared != set(order):
        raise RuntimeError(f"resources {sorted(declared)} but order lists {sorted(order)}: "
                           "list each Resource once in RESOURCE_ORDER")
    async with contextlib.AsyncExitStack() as stack:
        for name in order:
            provider = getattr(container, name)
            await _get(provider)
            stack.push_async_callback(_close, provider)
        yield


async def _close(provider: Any) -> None:
    closing = provider.shutdown()
    if inspect.isawaitable(closing):
        await closing


@contextlib.asynccontextmanager
async def open_service(settings: cfg.Settings,
                       worker: WorkerSlot | None = None) -> AsyncIterator[process.Service]:
    """The container with its resources open, as the process lifecycles use it;
    `worker` when this process is one of the supervisor's (`WORKERS` > 1)."""
    container = Container(settings=settings, worker=worker)
    async with open_resources(container, RESOURCE_ORDER):
        yield process.Service(
            app=await _get(container.app), background=await _get(container.background),
            consumer=await _get(container.consumer), execute=await _get(container.execute),
            events=await _get(container.events), probes=await _get(container.probes))


def main(argv: Sequence[str] | None = None) -> int:
    return process.main(argv, open_service)
