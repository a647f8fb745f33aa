"""Serves the ASGI app with hypercorn until `shutdown` is set.

The listening socket is bound first, by `listen`, so that a busy address fails
before anything connects to a database, as one `ListenError` naming it.

Slow clients are bounded by time, not trusted: a connection that has not sent a
complete request head within `idle_timeout` of opening (or of its last answer) is
closed, and so is an idle keep-alive connection; the head may not exceed
`MAX_HEAD_BYTES`; the body deadline is `RequestGuard`'s. hypercorn's
`read_timeout` stays unset: it limits every read, also while a server-sent
events follower legitimately sends nothing for hours.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

MAX_HEAD_BYTES = 16 * 1024  # request line and headers; h11 answers 431/400 past it
APP_QUEUE_MESSAGES = 10  # request-body chunks buffered per request before reads pause


class ListenError(Exception):
    """The address cannot be listened on (in use, not local, not permitted)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _config(host: str, port: int, graceful_timeout: float, idle_timeout: float) -> Config:
    config = Config()
    config.bind = [bind_address(host, port)]
    config.accesslog = None
    # A Logger object is used as it is: its records reach the root handler (JSON lines
    # in production) instead of a plain-text handler of hypercorn's own.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = idle_timeout
    config.read_timeout = None
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.max_app_queue_size = APP_QUEUE_MESSAGES
    return config


def listen(host: str, port: int) -> Sockets:
    """Bind the listening socket now; `ListenError` names the address if it cannot."""
    config = _config(host, port, 0, 1)
    try:
        return config.create_sockets()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (
            exc.strerror or str(exc))
        raise ListenError(bind_address(host, port), reason) from exc


async def serve_http(app: ASGIApp, sockets: Sockets, host: str, port: int,
                     shutdown: asyncio.Event, *, graceful_timeout: float,
                     idle_timeout: float) -> None:
    """Serve on `sockets` (from `listen`) until `shutdown`; then wait up to
    `graceful_timeout` for open requests before hypercorn cuts them."""
    config = _config(host, port, graceful_timeout, idle_timeout)
    wrapped: Any = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    await worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=shutdown.wait)
