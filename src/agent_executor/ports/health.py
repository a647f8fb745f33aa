from __future__ import annotations

from typing import Protocol

from agent_executor.domain.health import ProbeResult


class ReadinessProbe(Protocol):
    """Checks one backing service for `/ready`; never raises, answers within a second or so."""

    name: str

    async def check(self) -> ProbeResult:
        ...
