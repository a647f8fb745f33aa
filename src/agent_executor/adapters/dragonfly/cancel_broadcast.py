"""`DragonflyCancelBroadcast`: cancel announcements to every replica over one
Dragonfly pub/sub channel (`agent-executor:cancel`, the job id as the message)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from agent_executor.adapters.config import DragonflySettings
from agent_executor.adapters.dragonfly.writer import DRIVER_ERRORS

logger = logging.getLogger(__name__)

CHANNEL = "agent-executor:cancel"


class DragonflyCancelBroadcast:
    def __init__(self, client: Redis, *, channel: str = CHANNEL,
                 reconnect_seconds: float = 1.0) -> None:
        self._client = client
        self._channel = channel
        self._reconnect = reconnect_seconds

    @classmethod
    def from_settings(cls, settings: DragonflySettings) -> DragonflyCancelBroadcast:
        """On a client of its own (one pub/sub connection per process); nothing
        connects until the first command."""
        return cls(Redis(host=settings.host, port=settings.port, db=settings.db,
                         password=settings.password, socket_connect_timeout=2.0,
                         client_name="agent-executor-cancel"))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def announce(self, job_id: str) -> None:
        try:
            await self._client.publish(self._channel, job_id)
        except DRIVER_ERRORS as exc:
            logger.warning("cancel not broadcast (Dragonfly: %s); the job's runner sees it "
                           "at its next lease renewal", exc, extra={"job_id": job_id})

    async def listen(self, on_cancel: Callable[[str], None]) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=30.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        on_cancel(data.decode() if isinstance(data, bytes) else str(data))
            except DRIVER_ERRORS as exc:
                logger.warning("cancel broadcast: Dragonfly unavailable (%s); retrying", exc)
            finally:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._reconnect)
