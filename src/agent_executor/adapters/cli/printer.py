"""Prints a job's stream events as they happen: readable text, or JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from agent_executor.domain import events as ev
from agent_executor.domain.events import StreamEvent


class StreamPrinter:
    def __init__(self, out: TextIO = sys.stdout, as_json: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self._agent: str | None = None
        self._mid_line = False

    def __call__(self, event: StreamEvent) -> None:
        if self.as_json:
            self.out.write(json.dumps(event.to_data(), separators=(",", ":")) + "\n")
        else:
            self._readable(event)
        self.out.flush()

    def _readable(self, event: StreamEvent) -> None:
        data = event.data
        agent = str(data.get("agent", ""))
        if event.event_type == ev.LLM_STREAM:
            if agent != self._agent or not self._mid_line:
                self._line(f"[{agent}] ", end="")
                self._agent = agent
            self.out.write(str(data.get("content", "")))
            self._mid_line = True
        elif event.event_type == ev.TOOL_START:
            self._line(f"  -> {agent}: {data.get('tool')}({_short(data.get('input'), 100)})")
        elif event.event_type == ev.TOOL_END:
            self._line(f"  <- {agent}: {data.get('tool')} {data.get('status', '')}: "
                       f"{_short(data.get('output'), 100)}")
        elif event.event_type == ev.STATE_UPDATE:
            keys = ", ".join(sorted((data.get("update") or {}).keys())) or "-"
            self._line(f"  .. {agent}/{data.get('node')} updated {keys}")
        elif event.event_type == ev.END:
            self._end(data)

    def summary(self, end_data: Any) -> None:
        """Prints a finished job's outcome (the `end` event's data) on its own."""
        if self.as_json:
            self.out.write(json.dumps(end_data, separators=(",", ":")) + "\n")
        else:
            self._end(end_data)
        self.out.flush()

    def _end(self, data: Any) -> None:
        if data.get("status") == "completed":
            result = data.get("result") or {}
            self._line("== completed")
            self._line(f"output: {result.get('output', '')}")
            for path in sorted(result.get("files") or {}):
                self._line(f"file: {path}")
        else:
            error = data.get("error") or {}
            self._line(f"== failed: {error.get('type')}: {error.get('message')}")

    def _line(self, text: str, end: str = "\n") -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False
        self.out.write(text + end)
        self._mid_line = end == ""


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
