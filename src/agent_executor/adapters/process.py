"""The process: the `serve`, `run` and `prune` commands, signals and exit codes.

bootstrap builds the `Service` (the container with its resources open) and hands
`main` the function that opens it; this module decides what the process does
with it and how it ends:

- `serve` binds its port before anything else (a busy port is one line and exit
  1), serves HTTP, the NATS consumer and the orphan reaper, and on SIGTERM or
  SIGINT stops taking work, gives in-flight jobs `SHUTDOWN_GRACE_SECONDS`, hands
  back the rest (leases released, checkpoints kept) and says how many.
- `run` runs one job here, printing its stream, and asks on the terminal when the
  job waits for a decision; Ctrl-C stops it with one line (exit 130), the job left
  to resume. `prune` deletes old jobs.
  (cli/run.py). `status`, `cancel`, `resume` and `retry` talk to a running service
  (cli/remote.py) and need no configuration of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Protocol

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
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import AgentExecutorError
from agent_executor.domain.execute import ExecuteJob
from agent_executor.ports.events import EventStream

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


OpenService = Callable[[cfg.Settings], AbstractAsyncContextManager[Service]]


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
            return asyncio.run(serve(settings, open_service))
        if args.command == "run":
            decide = decide_on_terminal if sys.stdin.isatty() and args.job != "-" else None
            return asyncio.run(run_job(settings, open_service, args.job, as_json=args.json,
                                       decide=decide))
        return asyncio.run(prune_finished_jobs(settings, args.older_than, args.batch_size))
    except ValueError as exc:
        print(f"agent-executor: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except AgentExecutorError as exc:
        print(f"agent-executor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if args.command == "run":
            print("\nagent-executor run: stopped (Ctrl-C); the job is left unfinished with "
                  "its checkpoints: run the same job again to resume it", file=sys.stderr)
        else:
            print(f"\nagent-executor {args.command}: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_CTRL_C


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
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

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


async def serve(settings: cfg.Settings, open_service: OpenService) -> int:
    """HTTP, the NATS consumer (when configured) and the orphan reaper, until a signal."""
    try:
        sockets = listen(settings.host, settings.port)
    except ListenError as exc:
        if settings.profile == "production":  # logs are JSON lines only there
            logger.error("%s", exc)
        else:
            print(f"agent-executor serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _announce(settings)
    stop = asyncio.Event()
    grace = settings.shutdown_grace_seconds
    # After the grace, a handed-back job gives its lease back (bounded by a third of
    # the lease): hypercorn cuts what is still open only after that.
    settle = settings.job_lease_seconds / 3 + 1
    with _stop_on_signals(stop):
        async with open_service(settings) as service:
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
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({http, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            stop.set()
            reaper.cancel()
            logger.info("shutting down: draining in-flight jobs (up to %gs)", grace)
            handed_back = await _drain(service, guard, grace, settle)
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await http  # hypercorn's own error (if any) surfaces here
    if handed_back:
        logger.warning("stopped: %d job(s) handed back unfinished (leases released, "
                       "checkpoints kept: another replica or the next start resumes them)",
                       handed_back)
    else:
        logger.info("stopped: no job handed back")
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
