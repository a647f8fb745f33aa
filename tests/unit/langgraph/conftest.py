from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.domain.job import Job, parse_job

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "jobs"


@dataclass(frozen=True)
class Keys:
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 2
    model_allowed_base_urls: tuple[str, ...] = ()


class EventLog:
    """The event sink: keeps every event it is handed, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, event_type: str, data: Mapping[str, Any]) -> None:
        self.events.append((event_type, dict(data)))

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == event_type]


def example(name: str, job_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    if job_id is not None:
        data["job_id"] = job_id
    return data


async def hello_graph() -> Any:
    """The hello example's agent as `AgentCompiler` builds it, on an in-memory saver."""
    registry = ToolRegistry()
    compiler = AgentCompiler(InMemorySaver(), ChatModelFactory(Keys()), registry)
    agent = await compiler.acompile(parse_definition(example("hello")["agent_definition"],
                                                     registry.names()))
    return agent.graph


async def run_hello(graph: Any) -> dict[str, Any]:
    """The hello job run once by `graph` on a fresh thread: its final state."""
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    state: dict[str, Any] = await graph.ainvoke(example("hello")["input_payload"], config)
    return state


def job_with(definition: Mapping[str, Any], job_id: str = "job-1",
             **payload: Any) -> Job:
    input_payload = {"messages": [{"role": "user", "content": "go"}], **payload}
    return parse_job({"job_id": job_id, "trace_id": "trace-1",
                      "agent_definition": copy.deepcopy(dict(definition)),
                      "input_payload": input_payload})


def scripted(*replies: dict[str, Any], delay_ms: int = 0) -> dict[str, Any]:
    return {"provider": "scripted", "model": "test", "delay_ms": delay_ms,
            "responses": list(replies)}


def node(node_id: str, kind: str = "Orchestrator", model: dict[str, Any] | None = None,
         **config: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"name": node_id, "system_prompt": f"You are {node_id}.",
                           "model": model or scripted({"content": "ok"}), "tools": []}
    if kind == "Specialist":
        cfg["description"] = f"{node_id} does things"
    cfg.update(config)
    return {"id": node_id, "type": kind, "config": cfg}


def definition(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "test", "version": "1", "tool_definitions": [],
            "nodes": list(nodes) or [node("orchestrator")], "edges": [], **extra}


@pytest.fixture
def saver() -> InMemorySaver:
    return InMemorySaver()


@pytest.fixture
def runtime(saver: InMemorySaver) -> LangGraphAgentRuntime:
    return LangGraphAgentRuntime(saver, Keys(), registry=ToolRegistry.load())


@pytest.fixture
def log() -> EventLog:
    return EventLog()
