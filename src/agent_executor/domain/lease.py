"""A running job's lease, kept alive while it runs, and the broadcast of a process on
its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.ports.ledger import JobLedger

logger = logging.getLogger(__name__)


async def keep_lease(ledger: JobLedger, job_id: str, owner: str, lease_seconds: float,
                     cancelled: asyncio.Event) -> None:
    """Renew every third of the lease. The run must stop before the lease can
    expire in the ledger, or another worker could take the job over while this one
    still runs it: so each renewal, however long the ledger takes to answer, is
    bounded by a deadline a third of a lease short of the last known expiry, and
    missing it stops the run. A cancel the ledger reports sets `cancelled`."""
    interval = lease_seconds / 3
    deadline = time.monotonic() + lease_seconds - interval
    while True:
        await asyncio.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        attempt = time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, deadline - attempt)):
                reason = await ledger.renew(job_id, owner, lease_seconds)
            deadline = attempt + lease_seconds - interval
            if reason is not None:  # the broadcast was missed: the ledger knows
                cancelled.set()
        except (DependencyUnavailable, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise DependencyUnavailable(
                    f"the job's lease could not be renewed in time ({exc or 'no answer'}); "
                    "stopping so that no other worker runs it at the same time") from exc
            logger.warning("lease renewal failed (%s); retrying", exc,
                           extra={"job_id": job_id})


class NoBroadcast:
    """One process on its own: its cancels are noticed locally (`notice_cancel`)."""

    async def announce(self, job_id: str) -> None:
        return None

    async def listen(self, on_cancel: Callable[[str], None]) -> None:
        await asyncio.Event().wait()
