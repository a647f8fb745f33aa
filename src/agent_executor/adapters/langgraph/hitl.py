"""deepagents' human-in-the-loop interrupts to the contract's, and decisions back.

A node's `interrupt_on` becomes deepagents' `HumanInTheLoopMiddleware` (batched: one
LangGraph `interrupt` per model turn, its value a `HITLRequest` listing the gated
calls). A paused run leaves its interrupts in the checkpoint; several (specialists
running side by side) are one contract interrupt whose requests are theirs in order,
and a resume answers each with its share of the decisions, by LangGraph interrupt id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.types import Command
from langgraph.types import Interrupt as GraphInterrupt

from agent_executor.adapters.langgraph.state import to_json
from agent_executor.adapters.langgraph.stream import StreamTranslator
from agent_executor.domain.interrupts import (
    DECISION_TYPES,
    Decision,
    Interrupt,
    Resume,
    ToolRequest,
)


def interrupt_id(pending: Sequence[GraphInterrupt]) -> str:
    """LangGraph's id for one pause (stable across re-runs of the paused step); for
    several, a digest of theirs."""
    ids = [p.id for p in pending]
    if len(ids) == 1:
        return ids[0]
    return hashlib.sha256("+".join(ids).encode()).hexdigest()[:32]


def to_interrupt(pending: Sequence[GraphInterrupt], translator: StreamTranslator) -> Interrupt:
    requests: list[ToolRequest] = []
    for pause in pending:
        agent = translator.interrupt_agent(pause.id)
        value = pause.value if isinstance(pause.value, Mapping) else {}
        allowed = {c.get("action_name"): c.get("allowed_decisions")
                   for c in value.get("review_configs", []) if isinstance(c, Mapping)}
        for action in value.get("action_requests", []):
            name = str(action.get("name", ""))
            args = action.get("args") if isinstance(action.get("args"), Mapping) else {}
            decisions = allowed.get(name) or list(DECISION_TYPES)
            requests.append(ToolRequest(
                tool=name, call_id=translator.call_id(agent, name, args), input=to_json(args),
                allowed_decisions=tuple(d for d in DECISION_TYPES if d in decisions),
                agent=agent))
    first = translator.interrupt_agent(pending[0].id) if pending else ""
    return Interrupt(interrupt_id(pending), first, tuple(requests))


def resume_command(pending: Sequence[GraphInterrupt], resume: Resume) -> Command[Any]:
    """`Command(resume={langgraph_id: {"decisions": [...]}})`, each pause its share."""
    answers: dict[str, Any] = {}
    decisions = list(resume.decisions)
    for pause in pending:
        value = pause.value if isinstance(pause.value, Mapping) else {}
        actions = value.get("action_requests", [])
        share, decisions = decisions[:len(actions)], decisions[len(actions):]
        answers[pause.id] = {"decisions": [
            _decision(d, str(a.get("name", ""))) for d, a in zip(share, actions, strict=True)]}
    return Command(resume=answers)


def _decision(decision: Decision, tool: str) -> dict[str, Any]:
    if decision.type == "edit":
        return {"type": "edit", "edited_action": {"name": tool,
                                                   "args": dict(decision.input or {})}}
    if decision.type == "reject":
        return {"type": "reject"} if decision.message is None else \
            {"type": "reject", "message": decision.message}
    return {"type": "approve"}
