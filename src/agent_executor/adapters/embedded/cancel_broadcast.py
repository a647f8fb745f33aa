"""`InProcessCancelBroadcast`: cancel announcements within one process (the `local`
profile without Dragonfly, the CLI, unit tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class InProcessCancelBroadcast:
    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []
        self.announced: list[str] = []

    async def announce(self, job_id: str) -> None:
        self.announced.append(job_id)
        for listener in list(self._listeners):
            listener(job_id)

    async def listen(self, on_cancel: Callable[[str], None]) -> None:
        self._listeners.append(on_cancel)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self._listeners.remove(on_cancel)
