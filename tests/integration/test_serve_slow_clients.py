"""Slow clients cannot hold `serve`'s connections: heads and bodies have deadlines."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.integration.service import ServiceProcess

SLOW = {"HTTP_IDLE_TIMEOUT_SECONDS": "1", "HTTP_BODY_TIMEOUT_SECONDS": "1"}
CLIENTS = 30  # of each kind
BOUND = 8.0  # seconds a slow client may be held at most here (the timeouts are 1 s)


async def trickle(port: int, preamble: bytes, payload: bytes) -> tuple[float | None, bytes]:
    """Sends `preamble`, then `payload` one byte a second; returns when the server
    closed the connection (seconds after opening, None if it never did) and its answer."""
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(preamble)
    answer = b""
    try:
        for byte in payload:
            if time.monotonic() - opened > BOUND:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                return time.monotonic() - opened, answer
            answer += chunk
    except ConnectionError:
        return time.monotonic() - opened, answer
    finally:
        writer.close()
    return None, answer


async def test_trickled_heads_and_bodies_are_cut_and_health_still_answers(
        tmp_path: Path) -> None:
    service = await ServiceProcess(SLOW, tmp_path).start()
    try:
        head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 64 + b"\r\n\r\n"
        body_head = (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"ce-specversion: 1.0\r\nContent-Length: 64\r\n\r\n")
        clients = [asyncio.create_task(trickle(service.port, b"", head))
                   for _ in range(CLIENTS)]
        clients += [asyncio.create_task(trickle(service.port, body_head, b"{" * 64))
                    for _ in range(CLIENTS)]
        async with httpx.AsyncClient() as client:
            health = []
            while not all(c.done() for c in clients):
                started = time.monotonic()
                response = await client.get(f"{service.url}/health", timeout=5)
                health.append((response.status_code, time.monotonic() - started))
                await asyncio.wait(clients, timeout=0.2)
        results = [c.result() for c in clients]
    finally:
        service.kill()
    heads, bodies = results[:CLIENTS], results[CLIENTS:]
    assert all(closed is not None and closed < BOUND for closed, _ in heads), heads
    assert all(answer == b"" for _, answer in heads)  # no request was ever started
    assert all(closed is not None and closed < BOUND for closed, _ in bodies), bodies
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in bodies), bodies[:2]
    assert health and all(status == 200 for status, _ in health)
    assert max(seconds for _, seconds in health) < 1.0
