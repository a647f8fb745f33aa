"""Asking a person on the terminal to decide on an interrupted job's tool calls."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from agent_executor.domain.interrupts import DECISION_TYPES, Interrupt, ToolRequest

Ask = Callable[[str], str]
"""Shows a prompt and returns the line typed (`input`); raises `EOFError` at the end."""
Say = Callable[[str], None]

_KEYS = {"a": "approve", "e": "edit", "r": "reject"}
_LABELS = {"approve": "[a]pprove", "edit": "[e]dit", "reject": "[r]eject"}


def ask_decisions(interrupt: Mapping[str, Any], ask: Ask, say: Say) -> list[dict[str, Any]]:
    """One decision per pending request of the `on_interrupt` data, in order, each of a
    kind the request allows: shows the tool and its input, asks approve / edit / reject,
    reads an edit's arguments as JSON (again until they are a JSON object) and a
    rejection's message. `EOFError` from `ask` propagates (nobody is there to answer)."""
    paused = Interrupt.from_data(interrupt)
    total = len(paused.requests)
    say(f"The job is waiting for a decision on {total} tool call"
        f"{'' if total == 1 else 's'} (interrupt {paused.interrupt_id}).")
    return [_decide(request, i, total, paused.agent, ask, say)
            for i, request in enumerate(paused.requests, 1)]


def _decide(request: ToolRequest, index: int, total: int, agent: str, ask: Ask,
            say: Say) -> dict[str, Any]:
    allowed = [kind for kind in DECISION_TYPES if kind in request.allowed_decisions]
    say(f"[{index}/{total}] {request.agent or agent or 'the agent'} wants to call "
        f"{request.tool} with:")
    say(_indent(json.dumps(dict(request.input), indent=2, ensure_ascii=False)))
    question = " / ".join(_LABELS[kind] for kind in allowed) + "? "
    while True:
        answer = ask(question).strip().lower()
        kind = _KEYS.get(answer[:1]) if answer else None
        if kind is not None and kind in allowed and kind.startswith(answer):
            break
        say(f"  please answer {', '.join(allowed)} (or its first letter)")
    if kind == "edit":
        return {"type": "edit", "input": _read_arguments(request, ask, say)}
    if kind == "reject":
        message = ask("  why (the agent is told; Enter for none)? ").strip()
        return {"type": "reject", "message": message or f"{request.tool} was rejected"}
    return {"type": "approve"}


def _read_arguments(request: ToolRequest, ask: Ask, say: Say) -> dict[str, Any]:
    while True:
        raw = ask(f"  {request.tool}'s arguments as a JSON object on one line: ")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            say(f"  not valid JSON ({exc}); try again")
            continue
        if isinstance(value, dict):
            return value
        say("  expected a JSON object like {\"file_path\": \"/a.md\", ...}; try again")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
