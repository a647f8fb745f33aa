"""The process: the `serve`, `run` and `prune` commands, signals and exit codes.

bootstrap builds the `Service` (the container with its resources open) and hands
`main` the function that opens it; this module decides what the process does
with it and how it ends:

- `serve` binds its port before anything else (a busy port is one line and exit
  1), serves HTTP, the NATS consumer and the orphan reaper, and on SIGTERM or
  SIGINT stops taking work, gives in-flight jobs `SHUTDOWN_GRACE_SECONDS`, hands
  back the rest (leases released, checkpoints kept) and says how many. With
  `WORKERS` > 1 the process is a supervisor (workers/supervisor.py) and each of its
  worker processes runs that same path on the one socket (`run_worker`).
- `run` runs one job here, printing its stream, and asks on the terminal when the
  job waits for a decision; Ctrl-C stops it with one line (exit 130), the job left
  to resume. `prune` deletes old jobs.
  (cli/run.py). `status`, `cancel`, `resume` and `retry` talk to a running service
  (cli/remote.py) and need no configuration of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from starlette.types import ASGIApp

from agent_executor.adapters import config as cfg
from agent_executor.adapters.cli.args import build_parser
from agent_executor.adapters.cli.remote import COMMANDS as REMOTE_COMMANDS
from agent_executor.adapters.cli.remote import steer
from agent_executor.adapters.cli.run import ask_on_terminal, decide_on_terminal, run_job
from agent_executor.adapters.http.guard import RequestGuard
from agent_executor.adapters.http.server import ListenError, listen, serve_http
from agent_executor.adapters.logs import configure_logging
from agent_executor.adapters.postgres.prune import parse_duration, prune
from agent_executor.adapters.workers.board import WorkerSlot, keep_checked
from agent_executor.adapters.workers.supervisor import report_stopped, supervise
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import AgentExecutorError
from agent_executor.domain.execute import ExecuteJob
from agent_executor.ports.events import EventStream
from agent_executor.ports.health import ReadinessProbe

logger = logging.getLogger(__name__)
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CTRL_C = 0, 1, 2, 130


class Intake(Protocol):
    """The NATS consumer as the process drives it."""

    @property
    def in_flight(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Service:
    app: ASGIApp
    background: BackgroundJobs
    consumer: Intake | None
    execute: ExecuteJob
    events: EventStream
    probes: Sequence[ReadinessProbe] = ()  # this process's own checks (not `workers`)


class OpenService(Protocol):
    """bootstrap's `open_service`: the Service with its resources open; `worker` when
    this process is one of the supervisor's."""

    def __call__(self, settings: cfg.Settings, worker: WorkerSlot | None = None,
                 /) -> AbstractAsyncContextManager[Service]: ...


def main(argv: Sequence[str] | None, open_service: OpenService) -> int:
    args = build_parser().parse_args(argv)
    if args.command in REMOTE_COMMANDS:
        try:
            return steer(args, ask=ask_on_terminal)
        except KeyboardInterrupt:
            print(f"\nagent-executor {args.command}: stopped (Ctrl-C)", file=sys.stderr)
            return EXIT_CTRL_C
    try:
        settings = cfg.load_settings()
        if args.command == "serve":
            cfg.check_workers(settings)
    except cfg.ConfigError as exc:
        print(f"agent-executor: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.command == "serve":
        settings = replace(settings, host=settings.host if args.host is None else args.host,
                           port=settings.port if args.port is None else args.port)
    verbose = args.command == "serve"
    configure_logging(settings.log_level if verbose else "WARNING",
                      json_lines=settings.profile == "production")
    try:
        if args.command == "serve":
            return serve(settings, open_service)
        if args.command == "run":
            decide = decide_on_terminal if sys.stdin.isatty() and args.job != "-" else None
            return asyncio.run(run_job(settings, open_service, args.job, as_json=args.json,
                                       decide=decide))
        return asyncio.run(prune_finished_jobs(settings, args.older_than, args.batch_size))
    except (ValueError, AgentExecutorError) as exc:
        return _failed(exc)
    except KeyboardInterrupt:
        if args.command == "run":
            print("\nagent-executor run: stopped (Ctrl-C); the job is left unfinished with "
                  "its checkpoints: run the same job again to resume it", file=sys.stderr)
        else:
            print(f"\nagent-executor {args.command}: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_CTRL_C


def _failed(exc: ValueError | AgentExecutorError) -> int:
    if isinstance(exc, ValueError):
        print(f"agent-executor: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"agent-executor: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_FAILED


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


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, signals: Sequence[signal.Signals]) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        if stop.is_set():
            logger.warning("%s received again: already stopping; in-flight jobs are handed "
                           "back when SHUTDOWN_GRACE_SECONDS ends", sig.name)
        else:
            logger.info("%s received: stopping", sig.name)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, received, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def serve(settings: cfg.Settings, open_service: OpenService) -> int:
    """Bind the port, then serve here (`WORKERS` 1) or supervise the workers."""
    try:
        sockets = listen(settings.host, settings.port)
    except ListenError as exc:
        if settings.profile == "production":  # logs are JSON lines only there
            logger.error("%s", exc)
        else:
            print(f"agent-executor serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _announce(settings)
    if settings.workers == 1:
        return asyncio.run(serve_on(settings, sockets, open_service))
    return supervise(settings, sockets, functools.partial(run_worker, open_service),
                     drain_seconds=settings.shutdown_grace_seconds + _settle(settings))


def _settle(settings: cfg.Settings) -> float:
    # After the grace, a handed-back job gives its lease back (bounded by a third of
    # the lease): hypercorn cuts what is still open only after that.
    return settings.job_lease_seconds / 3 + 1


def run_worker(open_service: OpenService, settings: cfg.Settings, slot: WorkerSlot,
               sockets: Any) -> None:
    """One of the supervisor's worker processes (a fresh interpreter): the serve path
    on the supervisor's socket; SIGTERM (from the supervisor) drains it."""
    # Ctrl-C on a terminal reaches the whole group: the supervisor alone acts on it.
    # Born with SIGINT blocked (supervisor.py), so ignore it before unblocking.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    configure_logging(settings.log_level, json_lines=settings.profile == "production",
                      worker=slot.number)
    try:
        code = asyncio.run(serve_on(settings, sockets, open_service, slot))
    except (ValueError, AgentExecutorError) as exc:
        code = _failed(exc)
    sys.exit(code)


def _stop_with_supervisor(stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone (killed) drains and exits, never lingers."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    loop = asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(parent.sentinel)
        logger.warning("the supervisor (pid %s) is gone: stopping", parent.pid)
        stop.set()

    loop.add_reader(parent.sentinel, gone)


def _serving_as(worker: WorkerSlot | None, service: Service) -> asyncio.Task[None] | None:
    """A worker's row says it serves, and its own checks keep the row current."""
    if worker is None:
        return None
    worker.board.serving(worker.index, os.getpid())
    return asyncio.create_task(keep_checked(worker, service.probes), name="worker-checks")


async def serve_on(settings: cfg.Settings, sockets: Any, open_service: OpenService,
                   worker: WorkerSlot | None = None) -> int:
    """HTTP, the NATS consumer (when configured) and the orphan reaper on `sockets`,
    until a signal (or, in a worker, the supervisor's SIGTERM)."""
    stop = asyncio.Event()
    grace = settings.shutdown_grace_seconds
    settle = _settle(settings)
    signals = (signal.SIGTERM,) if worker else (signal.SIGTERM, signal.SIGINT)
    if worker is not None:
        _stop_with_supervisor(stop)
    with _stop_on_signals(stop, signals):
        async with open_service(settings, worker) as service:
            guard = RequestGuard(service.app, body_timeout=settings.http_body_timeout_seconds)
            reaper = asyncio.create_task(service.background.reap_forever(),
                                         name="orphan-reaper")
            if service.consumer is not None:
                await service.consumer.start()
            # What start-up imported and built lives as long as the process: exempt it
            # from the cyclic GC, or every full collection re-scans it (a tenth of a
            # job's CPU).
            gc.freeze()
            http = asyncio.create_task(serve_http(
                guard, sockets, settings.host, settings.port, stop,
                graceful_timeout=grace + settle,
                idle_timeout=settings.http_idle_timeout_seconds))
            logger.info("serving on %s:%d (profile %s)", settings.host, settings.port,
                        settings.profile)
            checking = _serving_as(worker, service)
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({http, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            stop.set()
            reaper.cancel()
            if worker is not None and checking is not None:
                worker.board.stopping(worker.index)
                checking.cancel()
            logger.info("shutting down: draining in-flight jobs (up to %gs)", grace)
            handed_back = await _drain(service, guard, grace, settle)
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await http  # hypercorn's own error (if any) surfaces here
    if worker is not None:
        worker.board.handed_back(worker.index, handed_back)
    report_stopped(handed_back, logger)
    return EXIT_OK


async def _drain(service: Service, guard: RequestGuard, grace: float, settle: float) -> int:
    """Everything that holds jobs gets the same grace at once; returns how many jobs
    were still running when it ran out (each is then cancelled and handed back)."""
    consumer = service.consumer
    background = asyncio.create_task(service.background.drain(grace))
    nats = asyncio.create_task(consumer.stop()) if consumer is not None else None
    http = asyncio.create_task(guard.drain(grace, settle_seconds=settle))
    # This deadline is set before the drains start theirs, so it passes first: what
    # still runs now is what they are about to cancel.
    await asyncio.wait({background, http, *([nats] if nats else [])}, timeout=grace)
    left = service.background.running + (consumer.in_flight if consumer is not None else 0)
    results = await asyncio.gather(background, http, *([nats] if nats else []),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            logger.warning("shutdown: %s: %s", type(result).__name__, result)
    http_jobs = results[1] if isinstance(results[1], int) else 0
    return left + http_jobs


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
