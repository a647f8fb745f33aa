"""Stand-in worker processes for tests/integration/test_supervisor.py: module-level
functions, so that multiprocessing's spawn finds them by name in the child. Each
leaves a file per start under `settings.data_dir`."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from agent_executor.adapters.config import Settings
from agent_executor.adapters.workers.board import WorkerSlot


def _count_start(settings: Settings, slot: WorkerSlot) -> int:
    """How many earlier starts this row had."""
    before = len(list(settings.data_dir.glob(f"start-{slot.number}-*")))
    (settings.data_dir / f"start-{slot.number}-{os.getpid()}").touch()
    return before


def fail_at_start(settings: Settings, slot: WorkerSlot, sockets: Any) -> None:
    _count_start(settings, slot)
    sys.exit(3)


def serve_once_then_fail_at_start(settings: Settings, slot: WorkerSlot, sockets: Any) -> None:
    """The first start serves and crashes; every later one fails before serving."""
    if _count_start(settings, slot) == 0:
        slot.board.serving(slot.index, os.getpid())
        sys.exit(4)
    sys.exit(5)


def serve_until_sigterm(settings: Settings, slot: WorkerSlot, sockets: Any) -> None:
    """Serves, ready, until SIGTERM; then says it handed back one job."""
    _count_start(settings, slot)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    slot.board.serving(slot.index, os.getpid())
    slot.board.checked(slot.index, [])
    signal.sigwait({signal.SIGTERM})
    slot.board.handed_back(slot.index, 1)
    sys.exit(0)
