"""`NatsReadinessProbe`: `/ready`'s check of NATS: connected, fetching, consumer there."""

from __future__ import annotations

import asyncio

from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.consumer import NatsJobConsumer
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.health import ProbeResult


class NatsReadinessProbe:
    """Ready when the client is connected, the fetch loop runs and the durable
    consumer answers `consumer_info` within `timeout_seconds`."""

    name = "nats"

    def __init__(self, connection: NatsConnection, consumer: NatsJobConsumer, *,
                 timeout_seconds: float = 1.0) -> None:
        self._connection = connection
        self._consumer = consumer
        self._timeout = timeout_seconds

    async def check(self) -> ProbeResult:
        if not self._connection.is_connected:
            down = self._connection.seconds_disconnected()
            return ProbeResult(ok=False, detail=f"not connected to {self._connection.where}"
                               + (f" for {down:.0f}s" if down else ""))
        if not self._consumer.running:
            return ProbeResult(ok=False, detail="the consumer is not fetching (stopped)")
        try:
            async with asyncio.timeout(self._timeout):
                await self._consumer.consumer_info()
        except TimeoutError:
            return ProbeResult(ok=False, detail=f"no consumer info within {self._timeout:g}s")
        except DependencyUnavailable as exc:
            return ProbeResult(ok=False, detail=str(exc)[:200])
        return ProbeResult(ok=True)
