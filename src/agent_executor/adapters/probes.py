"""Running a readiness probe with a bound, for `/ready` and for a worker's own row
on the supervisor's board: a probe that hangs or raises is a failed check, never
an error of the caller."""

from __future__ import annotations

import asyncio

from agent_executor.domain.health import ProbeResult
from agent_executor.ports.health import ReadinessProbe


async def check_within(probe: ReadinessProbe, timeout: float) -> ProbeResult:
    try:
        return await asyncio.wait_for(probe.check(), timeout)
    except TimeoutError:
        return ProbeResult(ok=False, detail=f"no answer within {timeout:g}s")
    except Exception as exc:  # a probe must never break its caller
        return ProbeResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
