"""The outermost ASGI layer: every request ends with an answer the client can use.

- A request body must arrive within `body_timeout` of the first read: a client
  trickling it gets `408` and the connection is closed.
- On shutdown (`drain`), new `POST`s get `503` with `Retry-After`; open requests
  get the grace period to finish; what is still open then is handed back: a
  request not yet answered (a synchronous job) gets `503` with `Retry-After` and
  a JSON error, a streamed answer (server-sent events) ends cleanly with a
  `retry:` hint, so followers reconnect instead of seeing a broken stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
EVENT_STREAM = b"text/event-stream"


@dataclass(eq=False)
class _InFlight:
    task: asyncio.Task[object]
    method: str
    started: bool = False
    finished: bool = False
    streaming: bool = False
    aborted: str | None = None  # "shutdown" or "body_timeout"
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def holds_shutdown(self) -> bool:
        """A follower's stream never ends by itself: it does not delay the shutdown."""
        return not self.streaming

    def abort(self, reason: str) -> None:
        if self.aborted is None and not self.finished:
            self.aborted = reason
            self.task.cancel()


class RequestGuard:
    def __init__(self, app: ASGIApp, *, body_timeout: float,
                 retry_after_seconds: int = RETRY_AFTER_SECONDS) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.retry_after = retry_after_seconds
        self.closing = False
        self._open: set[_InFlight] = set()
        self._settled = asyncio.Event()  # no open request holds the shutdown
        self._settled.set()

    @property
    def open_requests(self) -> int:
        return len(self._open)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.closing and scope["method"] == "POST":
            await self._refuse(send, 503, "the service is shutting down",
                               ["nothing was started; send it again (another replica, or "
                                "this one once it is back)"], retry=True)
            return
        task = asyncio.current_task()
        assert task is not None
        request = _InFlight(task, scope["method"])
        self._enter(request)
        try:
            await self.app(scope, self._receive(request, receive), self._send(request, send))
        except asyncio.CancelledError:
            if request.aborted is None:
                raise
            if task.cancelling():
                task.uncancel()
            await self._answer_aborted(request, send)
        finally:
            self._leave(request)

    def _enter(self, request: _InFlight) -> None:
        self._open.add(request)
        self._settled.clear()

    def _leave(self, request: _InFlight) -> None:
        self._open.discard(request)
        request.done.set()
        self._update_settled()

    def _update_settled(self) -> None:
        if not any(r.holds_shutdown for r in self._open):
            self._settled.set()

    def _receive(self, request: _InFlight, receive: Receive) -> Receive:
        deadline: float | None = None
        body_done = False

        async def guarded() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                request.aborted = "body_timeout"  # this task ends itself: no cancel()
                raise asyncio.CancelledError from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message
        return guarded

    def _send(self, request: _InFlight, send: Send) -> Send:
        async def guarded(message: Message) -> None:
            if request.aborted is not None:
                return  # the guard answers instead (see _answer_aborted)
            if message["type"] == "http.response.start":
                request.started = True
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(EVENT_STREAM):
                    request.streaming = True
                    self._update_settled()
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                request.finished = True
            await send(message)
        return guarded

    async def _answer_aborted(self, request: _InFlight, send: Send) -> None:
        if request.finished:
            return
        if request.aborted == "body_timeout":
            if not request.started:
                await self._refuse(send, 408, "request body not received in time",
                                   [f"the whole body must arrive within "
                                    f"HTTP_BODY_TIMEOUT_SECONDS ({self.body_timeout:g}s)"],
                                   retry=False)
            return
        if not request.started:
            await self._refuse(send, 503, "the service is shutting down",
                               ["the job was handed back unfinished: its lease is released "
                                "and its checkpoint kept; send the same event again to get "
                                "its result"], retry=True)
            return
        tail = f"retry: {self.retry_after * 1000}\n\n".encode() if request.streaming else b""
        try:
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except Exception as exc:  # the client left while the stream was being ended
            logger.debug("could not end a stream cleanly: %s: %s", type(exc).__name__, exc)

    async def _refuse(self, send: Send, status: int, error: str, details: list[str], *,
                      retry: bool) -> None:
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        if retry:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        body = json.dumps({"error": error, "details": details}).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def drain(self, grace_seconds: float, *, settle_seconds: float) -> int:
        """Refuse new work, give open requests `grace_seconds`, hand back the rest;
        returns how many unanswered requests (jobs) were handed back."""
        self.closing = True
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._settled.wait(), grace_seconds)
        except TimeoutError:
            pass
        remaining = list(self._open)
        jobs = sum(1 for r in remaining if not r.started and r.method == "POST")
        followers = sum(1 for r in remaining if r.streaming)
        for request in remaining:
            request.abort("shutdown")
        if remaining:
            await asyncio.wait([asyncio.create_task(r.done.wait()) for r in remaining],
                               timeout=settle_seconds)
            logger.info("HTTP: %d request(s) handed back after %.1fs, %d event stream(s) "
                        "ended with a retry hint", jobs, time.monotonic() - started, followers)
        return jobs
