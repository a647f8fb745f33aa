"""`DragonflyReadinessProbe`: `/ready`'s check of Dragonfly, a `PING`."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.health import ProbeResult
from agent_executor.ports.events import EventStream


@runtime_checkable
class Pingable(Protocol):
    async def ping(self) -> None:
        ...


class DragonflyReadinessProbe:
    """PINGs through the event stream's client within `timeout_seconds`.

    Takes the `DragonflyEventStream` (typed as the port, as the container holds it).
    """

    name = "dragonfly"

    def __init__(self, stream: EventStream | Pingable, *, timeout_seconds: float = 1.0) -> None:
        if not isinstance(stream, Pingable):
            raise TypeError(f"DragonflyReadinessProbe needs a stream with ping(), "
                            f"got {type(stream).__name__}")
        self._stream: Pingable = stream
        self._timeout = timeout_seconds

    async def check(self) -> ProbeResult:
        try:
            async with asyncio.timeout(self._timeout):
                await self._stream.ping()
        except TimeoutError:
            return ProbeResult(ok=False, detail=f"no PONG within {self._timeout:g}s")
        except DependencyUnavailable as exc:
            return ProbeResult(ok=False, detail=str(exc)[:200])
        return ProbeResult(ok=True)
