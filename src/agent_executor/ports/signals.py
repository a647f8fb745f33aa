from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class CancelBroadcast(Protocol):
    """Tells every replica at once that a job was asked to cancel.

    Best effort and fast: the ledger holds the request (`JobLedger.cancel`), and a
    runner that misses the broadcast sees it at its next lease renewal. Never raises
    for a broken backend (the loss is logged).
    """

    async def announce(self, job_id: str) -> None:
        ...

    async def listen(self, on_cancel: Callable[[str], None]) -> None:
        """Call `on_cancel(job_id)` for every announcement, until cancelled;
        reconnects by itself."""
        ...
