"""One fetched message, as the consumer's handler sees it, and the one place where
NATS client errors become domain errors.

`Delivery` is the seam: `NatsDelivery` wraps a `nats.aio.msg.Msg`; the unit
tests drive the handler with a fake delivery that records how it was settled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Protocol

import nats
from nats.aio.msg import Msg

from agent_executor.domain.errors import DependencyUnavailable

# What the client raises when the server, the connection or a request fails.
NATS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)


@contextlib.contextmanager
def nats_errors(what: str) -> Iterator[None]:
    """`raise DependencyUnavailable(...) from exc` for every NATS client error."""
    try:
        yield
    except NATS_ERRORS as exc:
        raise DependencyUnavailable(f"NATS {what}: {type(exc).__name__}: {exc}".rstrip(": ")) \
            from exc


class Delivery(Protocol):
    """A message of the intake stream, delivered for the `num_delivered`-th time.
    Settling raises `DependencyUnavailable` when the server cannot be told."""

    @property
    def subject(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    @property
    def data(self) -> bytes: ...

    @property
    def num_delivered(self) -> int: ...

    @property
    def message_id(self) -> str:
        """Unique per message of the stream (the same on every redelivery)."""
        ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None) -> None: ...

    async def term(self) -> None: ...

    async def in_progress(self) -> None: ...


class NatsDelivery:
    """`Delivery` over a JetStream message."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        metadata = msg.metadata
        self.num_delivered: int = metadata.num_delivered
        self.message_id = f"{metadata.stream}:{metadata.sequence.stream}"

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def headers(self) -> Mapping[str, str] | None:
        return self._msg.headers

    @property
    def data(self) -> bytes:
        return self._msg.data

    async def ack(self) -> None:
        with nats_errors("ack"):
            await self._msg.ack()

    async def nak(self, delay: float | None) -> None:
        with nats_errors("nak"):
            await self._msg.nak(delay=delay)

    async def term(self) -> None:
        with nats_errors("term"):
            await self._msg.term()

    async def in_progress(self) -> None:
        with nats_errors("in-progress ack"):
            await self._msg.in_progress()
