"""Serves the Starlette app with hypercorn until `shutdown` is set."""

from __future__ import annotations

import asyncio

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette


async def serve_http(app: Starlette, host: str, port: int, shutdown: asyncio.Event,
                     graceful_timeout: float) -> None:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = 75  # above common load-balancer idle timeouts
    await serve(app, config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
