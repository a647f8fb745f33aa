"""`NatsConnection`: the one NATS client of the process, reconnecting forever."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from agent_executor.adapters.config import NatsSettings
from agent_executor.domain.errors import DependencyUnavailable

logger = logging.getLogger(__name__)


DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default, until INFO says otherwise


class NatsConnection:
    """Owns the client: connects once, then reconnects forever after any loss
    (each disconnect and reconnect is logged once). `aclose` drains it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = Client()
        self.disconnected_at: float | None = None
        self.reconnects = 0

    @classmethod
    async def connect(cls, settings: NatsSettings | str, *, name: str = "agent-executor",
                      connect_timeout_seconds: float = 30.0,
                      reconnect_wait_seconds: float = 1.0) -> NatsConnection:
        """Connect, retrying for up to `connect_timeout_seconds`; then raise
        `DependencyUnavailable` (start-up fails rather than serving without intake)."""
        url = settings if isinstance(settings, str) else settings.url
        connection = cls(url)
        try:
            async with asyncio.timeout(connect_timeout_seconds):
                await connection.client.connect(
                    servers=[url], name=name, allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=reconnect_wait_seconds,  # type: ignore[arg-type]
                    connect_timeout=2, ping_interval=10, max_outstanding_pings=3,
                    error_cb=connection._on_error, disconnected_cb=connection._on_disconnect,
                    reconnected_cb=connection._on_reconnect, closed_cb=connection._on_closed)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await connection._force_close()
            raise DependencyUnavailable(
                f"NATS at {connection.where} not reachable within "
                f"{connect_timeout_seconds:g}s ({type(exc).__name__})") from exc
        logger.info("connected to NATS at %s", connection.where)
        return connection

    @property
    def where(self) -> str:
        """The server's host and port, never credentials from the URL."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 4222}"

    @property
    def js(self) -> JetStreamContext:
        return self.client.jetstream()

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its INFO's `max_payload`)."""
        return int(self.client.max_payload or DEFAULT_MAX_PAYLOAD)

    @property
    def is_connected(self) -> bool:
        return bool(self.client.is_connected)

    def seconds_disconnected(self) -> float:
        return 0.0 if self.disconnected_at is None else time.monotonic() - self.disconnected_at

    async def aclose(self, timeout_seconds: float = 10.0) -> None:
        """Drain (flush what is pending, stop subscriptions), then close."""
        if self.client.is_closed:
            return
        try:
            async with asyncio.timeout(timeout_seconds):
                await self.client.drain()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            logger.warning("NATS drain did not complete (%s); closing", type(exc).__name__)
        await self._force_close()

    async def _force_close(self) -> None:
        if not self.client.is_closed:
            try:
                await self.client.close()
            except (OSError, nats.errors.Error):  # closing is best effort
                pass

    async def _on_error(self, exc: Exception) -> None:
        if self.disconnected_at is None:
            logger.warning("NATS error: %s: %s", type(exc).__name__, exc)
        else:
            logger.debug("NATS still unreachable: %s: %s", type(exc).__name__, exc)

    async def _on_disconnect(self) -> None:
        if self.disconnected_at is None and not self.client.is_closed:
            self.disconnected_at = time.monotonic()
            logger.warning("NATS connection to %s lost; reconnecting", self.where)

    async def _on_reconnect(self) -> None:
        down = self.seconds_disconnected()
        self.disconnected_at = None
        self.reconnects += 1
        logger.info("NATS reconnected to %s after %.1fs", self.where, down)

    async def _on_closed(self) -> None:
        logger.info("NATS connection closed")
