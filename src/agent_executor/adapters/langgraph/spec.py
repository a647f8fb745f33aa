"""The typed form of a validated agent_definition (see definition.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ScriptedToolCall:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptedReply:
    content: str
    tool_calls: tuple[ScriptedToolCall, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    model: str
    path: str
    base_url: str | None = None
    temperature: float | None = None
    replies: tuple[ScriptedReply, ...] = ()
    delay_ms: int = 0


@dataclass(frozen=True)
class AgentSpec:
    node_id: str
    kind: Literal["Orchestrator", "Specialist"]
    name: str
    description: str
    system_prompt: str
    model: ModelSpec
    tools: tuple[str, ...]
    interrupt_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Human-in-the-loop tools: name -> the decisions allowed (approve, edit, reject)."""


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    version: str
    orchestrator: AgentSpec
    specialists: tuple[AgentSpec, ...]
    digest: str
    """sha256 of the canonical JSON of the definition: equal definitions, equal digests."""
    size: int = 0
    """Bytes of that canonical JSON (what the compiled-graph cache weighs it by)."""

    @property
    def agents(self) -> int:
        return 1 + len(self.specialists)
