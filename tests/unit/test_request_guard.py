"""RequestGuard driven in memory: a fake ASGI server on one side, small apps on the other."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from agent_executor.adapters.http.guard import RequestGuard


class Exchange:
    """One request as a server would drive it: the messages it feeds, those it gets."""

    def __init__(self, method: str = "POST", body: list[bytes] | None = None,
                 trickle_seconds: float | None = None) -> None:
        self.scope: Scope = {"type": "http", "method": method, "path": "/", "headers": []}
        self.body = body or [b"{}"]
        self.trickle = trickle_seconds
        self.sent: list[Message] = []
        self.disconnected = asyncio.Event()

    async def receive(self) -> Message:
        if self.body:
            if self.trickle is not None:
                await asyncio.sleep(self.trickle)  # the client sends slowly
            chunk = self.body.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body_bytes(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def ended(self) -> bool:
        last = self.sent[-1] if self.sent else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


class SlowJobApp:
    """Reads the body, then 'runs a job' until cancelled; records that it was."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True  # the job gives its lease back here
            raise


class FollowerApp:
    """A server-sent events answer that never ends by itself."""

    def __init__(self) -> None:
        self.streaming = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the (empty) body of a GET
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n",
                    "more_body": True})
        self.streaming.set()
        await receive()  # waits for the client to go, as Starlette's streams do


async def quick_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def error_of(exchange: Exchange) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exchange.body_bytes)
    assert set(body) == {"error", "details"}
    return body


async def test_an_unanswered_job_is_handed_back_as_503_with_retry_after() -> None:
    app = SlowJobApp()
    guard = RequestGuard(app, body_timeout=5)
    exchange = Exchange()
    request = asyncio.create_task(guard(exchange.scope, exchange.receive, exchange.send))
    await app.started.wait()
    handed_back = await guard.drain(0.05, settle_seconds=1)
    await asyncio.wait_for(request, 1)
    assert handed_back == 1 and app.cancelled
    assert exchange.status == 503 and exchange.headers[b"retry-after"] == b"5"
    assert "shutting down" in error_of(exchange)["error"] and exchange.ended


async def test_a_follower_does_not_hold_the_shutdown_and_ends_with_a_retry_hint() -> None:
    app = FollowerApp()
    guard = RequestGuard(app, body_timeout=5)
    exchange = Exchange(method="GET")
    request = asyncio.create_task(guard(exchange.scope, exchange.receive, exchange.send))
    await app.streaming.wait()
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await guard.drain(30, settle_seconds=1) == 0
    assert loop.time() - began < 5  # not the 30 s grace: a stream never ends by itself
    await asyncio.wait_for(request, 1)
    assert exchange.status == 200 and exchange.ended
    assert exchange.body_bytes == b"retry: 2000\n\nretry: 5000\n\n"


async def test_requests_that_finish_within_the_grace_are_left_alone() -> None:
    guard = RequestGuard(quick_app, body_timeout=5)
    exchange = Exchange(method="GET")
    await guard(exchange.scope, exchange.receive, exchange.send)
    assert await guard.drain(1, settle_seconds=1) == 0
    assert exchange.status == 200 and exchange.body_bytes == b"ok"


async def test_a_new_post_while_closing_is_refused_with_503_and_retry_after() -> None:
    app = SlowJobApp()
    guard = RequestGuard(app, body_timeout=5)
    await guard.drain(0, settle_seconds=0)
    exchange = Exchange()
    await asyncio.wait_for(guard(exchange.scope, exchange.receive, exchange.send), 2)
    assert not app.started.is_set()
    assert exchange.status == 503 and b"retry-after" in exchange.headers
    assert error_of(exchange)["error"] == "the service is shutting down"


async def test_a_body_trickled_past_the_deadline_gets_408_and_the_app_stops() -> None:
    app = SlowJobApp()
    guard = RequestGuard(app, body_timeout=0.2)
    exchange = Exchange(body=[b"{"] * 100, trickle_seconds=0.05)
    await asyncio.wait_for(guard(exchange.scope, exchange.receive, exchange.send), 2)
    assert not app.started.is_set()  # it never got the whole body
    assert exchange.status == 408 and exchange.headers[b"connection"] == b"close"
    assert "HTTP_BODY_TIMEOUT_SECONDS" in error_of(exchange)["details"][0]
    assert guard.open_requests == 0


async def test_a_body_in_time_is_not_cut_however_long_the_answer_takes() -> None:
    app = FollowerApp()
    guard = RequestGuard(app, body_timeout=0.05)
    exchange = Exchange(method="GET")
    request = asyncio.create_task(guard(exchange.scope, exchange.receive, exchange.send))
    await app.streaming.wait()
    await asyncio.sleep(0.2)  # well past the body deadline: the stream goes on
    assert not request.done() and exchange.status == 200
    request.cancel()
