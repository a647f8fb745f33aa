"""The composition root: the only module that imports adapters.

`Container` wires adapters to ports by profile: each backing service that is
configured gets its production adapter (PostgreSQL, Dragonfly, NATS); in the
`local` profile each one that is not falls back to an embedded adapter
(SQLite under AGENT_EXECUTOR_DATA_DIR, an in-process bus, a logging result
publisher). Adapters that own connections are `Resource`s: `main` opens them
and closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from dependency_injector import containers, providers
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent_executor.adapters import config as cfg
from agent_executor.adapters.cli.args import build_parser, load_job_file
from agent_executor.adapters.cli.printer import StreamPrinter
from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.embedded.event_stream import (
    InProcessEventStream,
    InProcessReadinessProbe,
)
from agent_executor.adapters.embedded.log_publisher import LoggingResultPublisher
from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger, SqliteReadinessProbe
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.http.server import serve_http
from agent_executor.adapters.langgraph.runtime import LangGraphAgentRuntime
from agent_executor.adapters.logs import configure_logging
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.postgres.checkpointer import PostgresCheckpointStore
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.adapters.postgres.probe import PostgresReadinessProbe
from agent_executor.adapters.postgres.prune import parse_duration, prune
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import AgentExecutorError, InvalidJob
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.health import ProbeResult
from agent_executor.ports.events import EventStream
from agent_executor.ports.health import ReadinessProbe
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.publisher import ResultPublisher

logger = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
SQLITE_CHECKPOINTS = "checkpoints.sqlite"


# Resources: open on init, close on shutdown (reverse order).

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
    yield InProcessEventStream(metrics)


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
               metrics: PrometheusMetrics) -> ResultPublisher:
    if nats is None:
        return LoggingResultPublisher(names, metrics)
    from agent_executor.adapters.nats.publisher import NatsResultPublisher
    assert settings.nats is not None
    publisher: ResultPublisher = NatsResultPublisher(nats, settings.nats, names, metrics,
                                                     max_event_bytes=settings.max_event_bytes)
    return publisher


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


class _HttpOnlyProbe:
    """NATS not configured (local profile): jobs come over HTTP only."""

    name = "nats"

    async def check(self) -> ProbeResult:
        return ProbeResult(ok=True, embedded=True, detail="NATS_URL not set: HTTP intake only")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=cfg.Settings)
    metrics = providers.Singleton(PrometheusMetrics)
    names = providers.Singleton(EventNames, source=settings.provided.cloudevent_source,
                                type_prefix=settings.provided.cloudevent_type_prefix)
    ledger = providers.Resource(_ledger, settings)
    checkpointer = providers.Resource(_checkpointer, settings)
    events = providers.Resource(_event_stream, settings, metrics)
    nats = providers.Resource(_nats, settings)
    publisher = providers.Singleton(_publisher, settings, nats, names, metrics)
    runtime = providers.Singleton(LangGraphAgentRuntime, checkpointer, settings)
    execute = providers.Singleton(
        ExecuteJob, ledger, runtime, events, publisher, metrics, owner=providers.Callable(_owner),
        max_concurrent=settings.provided.max_concurrent_jobs,
        job_timeout_seconds=settings.provided.job_timeout_seconds,
        lease_seconds=settings.provided.job_lease_seconds,
        max_attempts=settings.provided.max_job_attempts)
    background = providers.Singleton(BackgroundJobs, execute, ledger)
    consumer = providers.Singleton(_consumer, settings, nats, execute, names, metrics)
    probes = providers.Singleton(_probes, settings, ledger, events, nats, consumer)
    app = providers.Singleton(
        create_app, execute=execute, background=background, ledger=ledger, events=events,
        probes=probes, metrics=metrics, names=names,
        max_event_bytes=settings.provided.max_event_bytes,
        cors_allow_origins=settings.provided.cors_allow_origins,
        api_tokens=settings.provided.api_tokens)


async def _get(provider: Any) -> Any:
    value = provider()
    return await value if inspect.isawaitable(value) else value


@contextlib.asynccontextmanager
async def _container(settings: cfg.Settings) -> AsyncIterator[Container]:
    container = Container(settings=settings)
    try:
        init = container.init_resources()
        if init is not None:
            await init
        yield container
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


def _announce(settings: cfg.Settings) -> None:
    embedded = [name for name, value in (("PostgreSQL", settings.postgres),
                                         ("Dragonfly", settings.dragonfly),
                                         ("NATS", settings.nats)) if value is None]
    if embedded:
        logger.warning("profile %s: EMBEDDED fallbacks for %s (data under %s); set "
                       "POSTGRES_HOST, DRAGONFLY_HOST and NATS_URL for production",
                       settings.profile, ", ".join(embedded), settings.data_dir.resolve())
    if settings.profile == "production" and not settings.api_tokens:
        logger.warning("API_TOKENS is not set: the HTTP API answers anyone who reaches it")


async def serve(settings: cfg.Settings) -> None:
    """HTTP, the NATS consumer (when configured) and the orphan reaper, until SIGTERM."""
    _announce(settings)
    async with _container(settings) as container:
        app = await _get(container.app)
        background: BackgroundJobs = await _get(container.background)
        consumer = await _get(container.consumer)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reaper = asyncio.create_task(background.reap_forever(), name="orphan-reaper")
        if consumer is not None:
            await consumer.start()
        # What start-up imported and built lives as long as the process: exempt it from
        # the cyclic GC, or every full collection re-scans it (a tenth of a job's CPU).
        gc.freeze()
        logger.info("serving on %s:%d (profile %s)", settings.host, settings.port,
                    settings.profile)
        grace = settings.shutdown_grace_seconds
        http = asyncio.create_task(serve_http(app, settings.host, settings.port, stop, grace))
        await asyncio.wait({http, asyncio.create_task(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        logger.info("shutting down: draining in-flight jobs (up to %gs)", grace)
        reaper.cancel()
        drains = [background.drain(grace)]
        if consumer is not None:
            drains.append(consumer.stop())
        await asyncio.gather(*drains, return_exceptions=True)
        with contextlib.suppress(BaseException):
            await http
    logger.info("stopped")


async def run_job(settings: cfg.Settings, path: str, *, as_json: bool) -> int:
    """Run one job in this process, printing its stream events as they happen."""
    try:
        job = load_job_file(path, EventNames(settings.cloudevent_source,
                                             settings.cloudevent_type_prefix))
    except OSError as exc:
        print(f"agent-executor run: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidJob as exc:
        extra = [d for d in exc.details if d not in exc.message]
        print("agent-executor run: " + "; ".join([exc.message, *extra]), file=sys.stderr)
        return EXIT_INVALID
    printer = StreamPrinter(as_json=as_json)
    async with _container(settings) as container:
        execute: ExecuteJob = await _get(container.execute)
        events: EventStream = await _get(container.events)
        try:
            record = await execute.claim(job, "cli")
            if record.result is not None:
                print(f"job {job.job_id} already {record.status}; its recorded result:",
                      file=sys.stderr)
                result = record.result
                printer.summary({"status": result.status, **result.to_data()})
            else:
                follower = asyncio.create_task(_print_stream(events, job.job_id, printer))
                result = await execute.run_claimed(job, record)
                await asyncio.wait_for(follower, 10)
        except AgentExecutorError as exc:
            print(f"agent-executor run: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK if result.status == "completed" else EXIT_FAILED


async def _print_stream(events: EventStream, job_id: str, printer: StreamPrinter) -> None:
    async for event in events.follow(job_id, 0, live=True):
        printer(event)


async def prune_finished_jobs(settings: cfg.Settings, older_than: str, batch_size: int) -> int:
    age = parse_duration(older_than)
    if settings.postgres is None:
        print("agent-executor prune: needs PostgreSQL (POSTGRES_HOST is not set)",
              file=sys.stderr)
        return EXIT_INVALID
    report = await prune(settings.postgres, settings.postgres.schema, age,
                         batch_size=batch_size)
    print(report.summary())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = cfg.load_settings()
    except cfg.ConfigError as exc:
        print(f"agent-executor: {exc}", file=sys.stderr)
        return EXIT_INVALID
    verbose = args.command == "serve"
    configure_logging(settings.log_level if verbose else "WARNING",
                      json_lines=settings.profile == "production")
    try:
        if args.command == "serve":
            asyncio.run(serve(settings))
            return EXIT_OK
        if args.command == "run":
            return asyncio.run(run_job(settings, args.job, as_json=args.json))
        return asyncio.run(prune_finished_jobs(settings, args.older_than, args.batch_size))
    except ValueError as exc:
        print(f"agent-executor: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except AgentExecutorError as exc:
        print(f"agent-executor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
