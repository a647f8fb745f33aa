"""The supervisor's board: one row per worker process in shared memory, so that
`/ready`, answered by whichever worker the kernel hands the connection to,
speaks for all of them.

A row holds the worker's pid, where it is in its life (starting, serving,
stopping, down) and what its own readiness checks said last, refreshed by the
worker itself every `REFRESH_SECONDS`: a row whose checks stop being refreshed
is a worker that stopped answering. The supervisor writes `starting` and
`down`; the worker writes the rest. Each field has one writer at a time; a
reader that sees a row mid-update is at most one refresh late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from agent_executor.adapters.probes import check_within
from agent_executor.domain.health import ProbeResult
from agent_executor.ports.health import ReadinessProbe

STARTING, SERVING, STOPPING, DOWN = 0, 1, 2, 3
# A bit per check that failed; the last bit for any other probe's name.
CHECKS = ("postgres", "dragonfly", "nats", "other")
NOT_CHECKED = -1
REFRESH_SECONDS = 2.0
STALE_SECONDS = 15.0


class WorkerBoard:
    """Rows `0 .. count-1`; `/ready` and logs call a row's worker `index + 1`."""

    def __init__(self, count: int, context: BaseContext) -> None:
        self.count = count
        self._pid = context.RawArray("i", count)
        self._state = context.RawArray("i", [DOWN] * count)
        self._failing = context.RawArray("i", [NOT_CHECKED] * count)
        self._checked_at = context.RawArray("d", count)
        self._handed_back = context.RawArray("i", count)

    # Written by the supervisor.
    def starting(self, index: int, pid: int = 0) -> None:
        self._failing[index] = NOT_CHECKED
        self._handed_back[index] = 0
        self._pid[index] = pid
        self._state[index] = STARTING

    def down(self, index: int) -> None:
        self._state[index] = DOWN

    # Written by the worker of the row.
    def serving(self, index: int, pid: int) -> None:
        self._pid[index] = pid
        self._state[index] = SERVING

    def stopping(self, index: int) -> None:
        self._state[index] = STOPPING

    def checked(self, index: int, failed: Collection[str]) -> None:
        mask = 0
        for name in failed:
            mask |= 1 << (CHECKS.index(name) if name in CHECKS else len(CHECKS) - 1)
        self._checked_at[index] = time.monotonic()
        self._failing[index] = mask

    def handed_back(self, index: int, jobs: int) -> None:
        self._handed_back[index] = jobs

    # Read by anyone.
    def state(self, index: int) -> int:
        return int(self._state[index])

    def handed_back_total(self) -> int:
        return sum(self._handed_back)

    def not_ready(self, index: int, now: float | None = None) -> str | None:
        """Why the row's worker is not ready (at `now`, a `time.monotonic()`), or None
        when it is."""
        pid, state = self._pid[index], self._state[index]
        who = f"worker {index + 1} (pid {pid})" if pid else f"worker {index + 1}"
        if state == DOWN:
            return f"{who} exited: restarting"
        if state == STARTING:
            return f"{who} is starting"
        if state == STOPPING:
            return f"{who} is stopping"
        failing = self._failing[index]
        if failing == NOT_CHECKED:
            return f"{who} has not checked its dependencies yet"
        if failing:
            names = [name for bit, name in enumerate(CHECKS) if failing & (1 << bit)]
            return f"{who}: {', '.join(names)} not ready"
        age = (time.monotonic() if now is None else now) - self._checked_at[index]
        if age > STALE_SECONDS:
            return f"{who} has not refreshed its checks for {age:.0f}s"
        return None


@dataclass(frozen=True)
class WorkerSlot:
    """What a worker process is told of its place: its row, and where every worker
    writes its metrics."""

    index: int
    board: WorkerBoard
    metrics_dir: str

    @property
    def number(self) -> int:
        return self.index + 1


class WorkersReadinessProbe:
    """The `workers` check of `/ready`: every other worker's row says ready (this
    worker's own dependencies are the other checks of the same answer)."""

    name = "workers"

    def __init__(self, board: WorkerBoard, index: int) -> None:
        self._board = board
        self._index = index

    async def check(self) -> ProbeResult:
        reasons = [reason for other in range(self._board.count) if other != self._index
                   if (reason := self._board.not_ready(other)) is not None]
        if reasons:
            return ProbeResult(ok=False, detail="; ".join(reasons))
        return ProbeResult(ok=True, detail=f"all {self._board.count} workers ready "
                                           f"(this is worker {self._index + 1})")


async def keep_checked(slot: WorkerSlot, probes: Sequence[ReadinessProbe], *,
                       timeout: float = 2.0, interval: float = REFRESH_SECONDS) -> None:
    """Run this worker's own checks every `interval` and write the verdict to its row,
    until cancelled."""
    while True:
        results = await asyncio.gather(*(check_within(p, timeout) for p in probes))
        slot.board.checked(slot.index, [probe.name for probe, result
                                        in zip(probes, results, strict=True) if not result.ok])
        await asyncio.sleep(interval)
