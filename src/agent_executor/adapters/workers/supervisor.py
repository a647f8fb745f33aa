"""`serve` with `WORKERS` > 1: a supervisor process and its worker processes.

The supervisor binds nothing itself (the caller hands it the listening sockets,
bound before anything else so that a busy port stays one line and exit 1),
serves nothing and connects to nothing. It starts `WORKERS` processes from a
fresh interpreter each (multiprocessing's `spawn`, as hypercorn's own multi-
worker runner does), each given the sockets, its row of the board and the
directory of the pod's metrics; each runs the one-process serve path: its own
Service, NATS connection and pull subscription on the shared durable consumer,
pools and `MAX_CONCURRENT_JOBS` slots, exactly as a replica would.

Restarts. At start-up every worker must come up once, as one process must: a
worker that exits before it serves stops the service (exit 1). Later, a worker
that exits without being asked is restarted after `RESTART_DELAY_SECONDS`,
doubling (to `MAX_RESTART_DELAY_SECONDS`) for each restart in a row that exits
again before it serves; the `MAX_FAILED_STARTS`-th such restart in a row stops
the service (exit 1) rather than spin. Its jobs are not lost meanwhile: their
leases expire and a live worker's reaper resumes them.

Stopping. SIGTERM or SIGINT to the supervisor is forwarded as SIGTERM to every
worker, which drains as one process does (`SHUTDOWN_GRACE_SECONDS`); the
supervisor waits for them all, says how many jobs they handed back and exits 0.
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the
supervisor alone acts on it), and a worker whose supervisor is gone stops too.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from prometheus_client.multiprocess import mark_process_dead

from agent_executor.adapters import config as cfg
from agent_executor.adapters.workers.board import SERVING, STOPPING, WorkerBoard, WorkerSlot

logger = logging.getLogger(__name__)
EXIT_OK, EXIT_FAILED = 0, 1
RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 10.0
MAX_FAILED_STARTS = 5
STOP_MARGIN_SECONDS = 30.0  # past the workers' own drain bound, stragglers are killed
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A module-level function (spawn pickles it by name) run in each worker process.
WorkerTarget = Callable[[cfg.Settings, WorkerSlot, Any], None]


def supervise(settings: cfg.Settings, sockets: Any, target: WorkerTarget, *,
              drain_seconds: float) -> int:
    """Run `settings.workers` copies of `target` until a signal; the exit code.
    `drain_seconds`: how long one worker may take to stop once told."""
    metrics_dir = tempfile.mkdtemp(prefix="agent-executor-metrics-")
    # prometheus-client picks its multiprocess store when a worker imports it, from
    # the environment the worker inherits.
    previous = os.environ.get(METRICS_ENV)
    os.environ[METRICS_ENV] = metrics_dir
    try:
        return Supervisor(settings, sockets, target, metrics_dir,
                          drain_seconds=drain_seconds).run()
    finally:
        if previous is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)


def report_stopped(handed_back: int, log: logging.Logger = logger) -> None:
    """The last line of `serve`, with one process or many."""
    if handed_back:
        log.warning("stopped: %d job(s) handed back unfinished (leases released, "
                    "checkpoints kept: another replica or the next start resumes them)",
                    handed_back)
    else:
        log.info("stopped: no job handed back")


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """A worker is born with SIGINT blocked (the mask is inherited through exec) until
    it ignores it; the supervisor gets a Ctrl-C of that moment once unblocked."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class Supervisor:
    def __init__(self, settings: cfg.Settings, sockets: Any, target: WorkerTarget,
                 metrics_dir: str, *, drain_seconds: float) -> None:
        self.settings = settings
        self.sockets = sockets
        self.target = target
        self.metrics_dir = metrics_dir
        self.drain_seconds = drain_seconds
        self.count = settings.workers
        self.context = multiprocessing.get_context("spawn")
        self.board = WorkerBoard(self.count, self.context)
        self.processes: list[BaseProcess | None] = [None] * self.count
        self.served_before = [False] * self.count
        self.failed_starts = [0] * self.count
        self.restart_at: dict[int, float] = {}
        self.signals: list[str] = []
        self.fatal = False
        self.announced = False
        self.unclean = 0

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        for fd in (wake_read, wake_write):
            os.set_blocking(fd, False)
        previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._signalled)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                self._start(index)
            while not self.signals and not self.fatal:
                self._step(wake_read)
            return self._stop_all(wake_read)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_read)
            os.close(wake_write)

    def _signalled(self, signum: int, _: FrameType | None) -> None:
        self.signals.append(signal.Signals(signum).name)

    def _start(self, index: int) -> None:
        self.board.starting(index)
        process = self.context.Process(
            target=self.target, name=f"agent-executor-worker-{index + 1}",
            args=(self.settings, WorkerSlot(index, self.board, self.metrics_dir),
                  self.sockets))
        with _sigint_blocked():
            process.start()
        assert process.pid is not None
        self.board.starting(index, process.pid)
        self.processes[index] = process

    def _wait(self, wake_read: int, timeout: float | None) -> list[int]:
        """The rows whose worker exited (or none: a signal, a timeout)."""
        sentinels = {p.sentinel: i for i, p in enumerate(self.processes) if p is not None}
        ready = multiprocessing.connection.wait([*sentinels, wake_read], timeout)
        if wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
        return [sentinels[fd] for fd in ready if fd in sentinels]

    def _step(self, wake_read: int) -> None:
        now = time.monotonic()
        timeout = max(0.0, min(self.restart_at.values()) - now) if self.restart_at else None
        if not self.announced:  # until every worker serves, look at the board now and then
            timeout = 0.25 if timeout is None else min(timeout, 0.25)
        for index in self._wait(wake_read, timeout):
            self._exited(index)
        if self.signals or self.fatal:
            return
        for index, due in list(self.restart_at.items()):
            if due <= time.monotonic():
                del self.restart_at[index]
                self._start(index)
        if not self.announced and all(self.board.state(i) == SERVING
                                      for i in range(self.count)):
            self.announced = True
            logger.info("%d workers serving on %s:%d (supervisor pid %d)", self.count,
                        self.settings.host, self.settings.port, os.getpid())

    def _exited(self, index: int) -> None:
        process = self.processes[index]
        assert process is not None
        process.join()
        self.processes[index] = None
        code, pid = process.exitcode, process.pid
        served = self.board.state(index) in (SERVING, STOPPING)
        self.board.down(index)
        if pid is not None:  # its in-flight gauges end with it
            mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
        number = index + 1
        if self.signals:
            if code not in (0, -signal.SIGTERM):
                self.unclean += 1
                logger.warning("worker %d (pid %s) %s while stopping", number, pid, _how(code))
            return
        if not served and not self.served_before[index]:
            logger.error("worker %d (pid %s) %s before it served: start-up failed (its "
                         "error is above); stopping", number, pid, _how(code))
            self.fatal = True
            return
        self.served_before[index] = True
        self.failed_starts[index] = 0 if served else self.failed_starts[index] + 1
        if self.failed_starts[index] >= MAX_FAILED_STARTS:
            logger.error("worker %d (pid %s) %s before it served, %d restarts in a row: "
                         "stopping instead of restarting it again", number, pid, _how(code),
                         self.failed_starts[index])
            self.fatal = True
            return
        delay = min(RESTART_DELAY_SECONDS * 2 ** self.failed_starts[index],
                    MAX_RESTART_DELAY_SECONDS)
        logger.error("worker %d (pid %s) %s %s: restarting it in %gs", number, pid, _how(code),
                     "while serving" if served else "before it served", delay)
        self.restart_at[index] = time.monotonic() + delay

    def _forward(self) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def _stop_all(self, wake_read: int) -> int:
        self.restart_at.clear()
        live = sum(p is not None for p in self.processes)
        if self.signals:
            logger.info("%s received: stopping %d worker(s); each drains its jobs (up to "
                        "%gs)", self.signals[0], live, self.settings.shutdown_grace_seconds)
        else:
            self.signals.append("start-up failure")
        told = len(self.signals)
        self._forward()
        deadline = time.monotonic() + self.drain_seconds + STOP_MARGIN_SECONDS
        while any(p is not None for p in self.processes):
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill_stragglers()
                break
            for index in self._wait(wake_read, left):
                self._exited(index)
            if len(self.signals) > told:  # asked again: the workers say they already stop
                told = len(self.signals)
                self._forward()
        report_stopped(self.board.handed_back_total())
        return EXIT_FAILED if self.fatal or self.unclean else EXIT_OK

    def _kill_stragglers(self) -> None:
        for index, process in enumerate(self.processes):
            if process is not None:
                logger.error("worker %d (pid %s) still running %gs after SIGTERM: killing it",
                             index + 1, process.pid, self.drain_seconds + STOP_MARGIN_SECONDS)
                process.kill()
                self._exited(index)
