"""A model provider inside the test: a small HTTP/1.1 server on 127.0.0.1 speaking the
OpenAI Chat Completions and the Anthropic Messages wire formats, streaming (SSE),
and Ollama's `/api/chat` (streaming NDJSON).

It answers the first turn of a conversation with text and a `write_file` tool call
and a later turn (one that carries a tool result) with text only. `faults` are
applied to successive requests (`"429"`, `"500"`, `"401"`, `"hang"`; `"ok"` is a
normal answer); `always` to every request once `faults` is used up. Every request
is kept (`requests`: method, path, headers, body) so a test can count them and see
which headers arrived.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

TOOL_ARGS = {"file_path": "/hello.md", "content": "# Hello\n"}
ERRORS = {"429": (429, "rate_limit_error", "Too Many Requests"),
          "500": (500, "server_error", "Internal Server Error"),
          "401": (401, "authentication_error", "Unauthorized")}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ProviderServer:
    faults: list[str] = field(default_factory=list)
    always: str = "ok"
    retry_after: str | None = "0"
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> ProviderServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read(reader)
            if request is None:
                return
            self.requests.append(request)
            mode = self.faults.pop(0) if self.faults else self.always
            if mode == "hang":
                await self._release.wait()
                return
            anthropic = request.path.endswith("/messages")
            ollama = request.path == "/api/chat"
            if mode in ERRORS and ollama:
                status, _, reason = ERRORS[mode]
                body = json.dumps({"error": reason})
                _head(writer, status, reason, {"Content-Type": "application/json",
                                               "Content-Length": str(len(body))})
                writer.write(body.encode())
            elif ollama:
                _head(writer, 200, "OK", {"Content-Type": "application/x-ndjson"})
                for line in _ollama_lines(request.body):
                    writer.write(line.encode())
                    await writer.drain()
            elif mode in ERRORS:
                status, kind, reason = ERRORS[mode]
                body = (json.dumps({"type": "error", "error": {"type": kind, "message": reason}})
                        if anthropic else
                        json.dumps({"error": {"message": reason, "type": kind, "code": kind}}))
                headers = {"Content-Type": "application/json",
                           "Content-Length": str(len(body))}
                if mode == "429" and self.retry_after is not None:
                    headers["Retry-After"] = self.retry_after
                _head(writer, status, reason, headers)
                writer.write(body.encode())
            else:
                _head(writer, 200, "OK", {"Content-Type": "text/event-stream",
                                          "Cache-Control": "no-cache"})
                events = (_anthropic_events if anthropic else _openai_events)(request.body)
                for event in events:
                    writer.write(event.encode())
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _read(reader: asyncio.StreamReader) -> Request | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b"{}"
    return Request(method, path, headers, json.loads(body))


def _head(writer: asyncio.StreamWriter, status: int, reason: str,
          headers: dict[str, str]) -> None:
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close", *(
        f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())


def _answered_a_tool(body: dict[str, Any]) -> bool:
    for message in body.get("messages", []):
        if message.get("role") == "tool":
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return True
    return False


def _openai_events(body: dict[str, Any]) -> list[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": body.get("model", "m"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(data)}\n\n"

    if _answered_a_tool(body):
        events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Wrote "}),
                  chunk({"content": "it."}), chunk({}, "stop")]
    else:
        args = json.dumps(TOOL_ARGS)
        events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Writing "}),
                  chunk({"content": "the file."}),
                  chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "write_file", "arguments": ""}}]}),
                  chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[:12]}}]}),
                  chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[12:]}}]}),
                  chunk({}, "tool_calls")]
    return [*events, "data: [DONE]\n\n"]


def _anthropic_events(body: dict[str, Any]) -> list[str]:
    def event(kind: str, data: dict[str, Any]) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    usage = {"input_tokens": 10, "output_tokens": 5}
    events = [event("message_start", {"message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": body.get("model", "m"), "stop_reason": None, "stop_sequence": None,
        "usage": usage}})]
    events += [event("content_block_start", {"index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
               event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                    "text": "Writing "}}),
               event("content_block_stop", {"index": 0})]
    if _answered_a_tool(body):
        stop = "end_turn"
    else:
        stop = "tool_use"
        events += [event("content_block_start", {"index": 1, "content_block": {
                       "type": "tool_use", "id": "toolu_1", "name": "write_file", "input": {}}}),
                   event("content_block_delta", {"index": 1, "delta": {
                       "type": "input_json_delta", "partial_json": json.dumps(TOOL_ARGS)}}),
                   event("content_block_stop", {"index": 1})]
    events += [event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": {"output_tokens": 5}}),
               event("message_stop", {})]
    return events


def _ollama_lines(body: dict[str, Any]) -> list[str]:
    def line(message: dict[str, Any], done: bool) -> str:
        data: dict[str, Any] = {"model": body.get("model", "m"),
                                "created_at": "2026-01-01T00:00:00Z",
                                "message": {"role": "assistant", **message}, "done": done}
        if done:
            data.update(done_reason="stop", prompt_eval_count=10, eval_count=5)
        return json.dumps(data) + "\n"

    if _answered_a_tool(body):
        return [line({"content": "Wrote "}, False), line({"content": "it."}, False),
                line({"content": ""}, True)]
    return [line({"content": "Writing "}, False),
            line({"content": "", "tool_calls": [{"function": {
                "name": "write_file", "arguments": TOOL_ARGS}}]}, False),
            line({"content": ""}, True)]
