"""Prints a job's stream events as they happen: readable text, or JSON lines.

The text is made to be read at a glance on a terminal: each line starts with the
time since the job started, each agent keeps its own colour, tool calls, results,
pauses and the end are coloured by kind, and the last line sums the run up (status,
duration, model calls and tokens from the result's `usage`, files written). Colour
only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from agent_executor.domain import events as ev
from agent_executor.domain.events import StreamEvent

RESET, BOLD, DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN = (f"\x1b[{n}m" for n in range(31, 37))
AGENT_COLOURS = (CYAN, MAGENTA, BLUE, YELLOW, GREEN, "\x1b[94m", "\x1b[95m", "\x1b[96m")
STATUS_COLOURS = {"completed": GREEN, "failed": RED, "cancelled": YELLOW,
                  "interrupted": YELLOW}


def wants_colour(out: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour when `out` is a terminal, unless `NO_COLOR` is set (to anything but the
    empty string) or the terminal is `dumb`."""
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


class StreamPrinter:
    def __init__(self, out: TextIO | None = None, as_json: bool = False, *,
                 colour: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        out = sys.stdout if out is None else out
        self.out = out
        self.as_json = as_json
        self.colour = wants_colour(out) if colour is None else colour
        self.last_seq = 0
        self._clock = clock
        self._started = clock()
        self._agents: dict[str, str] = {}
        self._agent: str | None = None
        self._mid_line = False

    def __call__(self, event: StreamEvent) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        if self.as_json:
            self.out.write(json.dumps(event.to_data(), separators=(",", ":")) + "\n")
        else:
            self._readable(event)
        self.out.flush()

    def _readable(self, event: StreamEvent) -> None:
        data = event.data
        agent = str(data.get("agent", ""))
        kind = event.event_type
        if kind == ev.LLM_STREAM:
            if agent != self._agent or not self._mid_line:
                self._line(f"{self._name(f'[{agent}]')} ", end="")
                self._agent = agent
            self.out.write(str(data.get("content", "")))
            self._mid_line = True
        elif kind == ev.TOOL_START:
            self._line(f"  {self._paint('->', BLUE + BOLD)} {self._name(agent)}: "
                       f"{self._paint(str(data.get('tool')), BOLD)}"
                       f"({_short(data.get('input'), 100)})")
        elif kind == ev.TOOL_END:
            status = str(data.get("status", ""))
            mark = GREEN if status == "success" else RED
            self._line(f"  {self._paint('<-', mark + BOLD)} {self._name(agent)}: "
                       f"{data.get('tool')} {self._paint(status, mark)}: "
                       f"{_short(data.get('output'), 100)}")
        elif kind == ev.STATE_UPDATE:
            keys = ", ".join(sorted((data.get("update") or {}).keys())) or "-"
            self._line(self._paint(f"  .. {agent}/{data.get('node')} updated {keys}", DIM))
        elif kind == ev.INTERRUPT:
            tools = ", ".join(str(r.get("tool")) for r in data.get("requests") or [])
            self._line(f"{self._paint('|| paused:', YELLOW + BOLD)} {self._name(agent)} "
                       f"waits for a decision on {self._paint(tools, BOLD)}")
        elif kind == ev.END:
            self._end(data)

    def summary(self, end_data: Any, *, timed: bool = True) -> None:
        """Prints a finished job's outcome (the `end` event's data) on its own;
        `timed=False` for a recorded result (this process did not time it)."""
        if self.as_json:
            self.out.write(json.dumps(end_data, separators=(",", ":")) + "\n")
        else:
            self._end(end_data, timed=timed)
        self.out.flush()

    def _end(self, data: Mapping[str, Any], *, timed: bool = True) -> None:
        status = str(data.get("status"))
        result = data.get("result") or {}
        files = sorted(result.get("files") or {})
        if status == "completed":
            self._line(f"output: {result.get('output', '')}")
            for path in files:
                self._line(f"file: {path}")
        parts = [f"run {data.get('run', 1)}"]
        if timed:
            parts.insert(0, f"in {_duration(self._clock() - self._started)}")
        usage = _usage(data.get("usage") or result.get("usage"))
        if usage:
            parts.append(usage)
        if status == "completed":
            parts.append(f"{len(files)} file{'' if len(files) == 1 else 's'} written")
        headline = self._paint(f"== {status}", STATUS_COLOURS.get(status, "") + BOLD)
        tail = ""
        if status == "failed":
            error = data.get("error") or {}
            tail = f": {error.get('type')}: {error.get('message')}"
        elif status == "cancelled":
            tail = f": {data.get('reason') or 'cancelled'}"
        self._line(f"{headline} {' · '.join(parts)}{tail}", stamp=False)

    def _line(self, text: str, end: str = "\n", *, stamp: bool = True) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False
        if stamp:
            text = self._paint(f"{_clock(self._clock() - self._started)} ", DIM) + text
        self.out.write(text + end)
        self._mid_line = end == ""

    def _name(self, agent: str) -> str:
        """The agent's name (or a text naming it) in the agent's own colour."""
        key = agent.strip("[]")
        colour = self._agents.setdefault(key, AGENT_COLOURS[len(self._agents)
                                                            % len(AGENT_COLOURS)])
        return self._paint(agent, colour)

    def _paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if self.colour and colour else text


def _usage(usage: Any) -> str:
    """`3 model calls, 1,234 tokens (1,200 in, 34 out)`: what the result's usage has
    (no tokens where the provider reported none, as the scripted model)."""
    if not isinstance(usage, Mapping):
        return ""
    parts = []
    calls = usage.get("model_calls")
    if isinstance(calls, int):
        parts.append(f"{calls:,} model call{'' if calls == 1 else 's'}")
    total = usage.get("total_tokens")
    inputs, outputs = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(total, int) and isinstance(inputs, int) and isinstance(outputs, int):
        total = inputs + outputs
    if isinstance(total, int) and total > 0:
        split = [f"{n:,} {label}" for n, label in ((inputs, "in"), (outputs, "out"))
                 if isinstance(n, int)]
        parts.append(f"{total:,} tokens" + (f" ({', '.join(split)})" if split else ""))
    return ", ".join(parts)


def _clock(seconds: float) -> str:
    """A fixed-width time since the start: `  3.4s`, ` 1m05s`."""
    if seconds < 100:
        return f"{seconds:5.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:2d}m{rest:02d}s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
