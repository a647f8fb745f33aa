"""A validated definition to a compiled deep agent, each distinct definition once.

The orchestrator is the main agent; each Specialist a sub-agent that `task`
reaches by its `config.name`; every node runs on its own model. Every agent has
the todo list and the virtual filesystem, the orchestrator also `task`.
Compiled graphs are cached by the definition's content hash, an LRU bounded by
count, by agents and by definition bytes: a compiled 64-agent definition near the
limits holds about 12 MB, so a count alone would let distinct big definitions
grow the process by gigabytes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deepagents import SubAgent, create_deep_agent
from langchain.agents.middleware import AgentMiddleware, TodoListMiddleware
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from agent_executor.adapters.langgraph.accounting import (
    AccountingMiddleware,
    NoAgentMetrics,
    RunTally,
)
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.schema_memo import reuse_described_tool_copies
from agent_executor.adapters.langgraph.spec import AgentDefinition, AgentSpec
from agent_executor.adapters.langgraph.tools import ToolFailureMiddleware, ToolRegistry
from agent_executor.adapters.langgraph.tracing import (
    build_untraced_unless_tracing,
    run_tracing_bookkeeping_inline,
)
from agent_executor.ports.metrics import AgentMetrics

DEFAULT_CACHE_SIZE = 128
DEFAULT_CACHE_AGENTS = 512
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024

Graph = CompiledStateGraph[Any, Any, Any, Any]


@dataclass(frozen=True)
class CompiledAgent:
    graph: Graph
    definition: AgentDefinition

    @property
    def orchestrator(self) -> str:
        return self.definition.orchestrator.name


@runtime_checkable
class WritesCoalescer(Protocol):
    """A checkpointer that holds a task's writes back to store them with the checkpoint
    after them (`PooledPostgresSaver`), except those LangGraph waits for first."""

    def send_at_once(self, channels: Iterable[str]) -> None: ...


def delta_channels(graph: Graph) -> set[str]:
    """The graph's (and its subgraphs') delta channels: LangGraph stores their writes
    before the checkpoint that refers to them."""
    graphs = [graph, *(sub for _, sub in graph.get_subgraphs(recurse=True))]
    return {name for g in graphs for name, channel in getattr(g, "channels", {}).items()
            if isinstance(channel, DeltaChannel)}


class AgentCompiler:
    def __init__(self, checkpointer: BaseCheckpointSaver[Any], models: ChatModelFactory,
                 registry: ToolRegistry, max_cached: int = DEFAULT_CACHE_SIZE, *,
                 max_cached_agents: int = DEFAULT_CACHE_AGENTS,
                 max_cached_bytes: int = DEFAULT_CACHE_BYTES,
                 metrics: AgentMetrics | None = None) -> None:
        self._checkpointer = checkpointer
        self._models = models
        self._registry = registry
        self._max_cached = max_cached
        self._max_agents = max_cached_agents
        self._max_bytes = max_cached_bytes
        self._cache: OrderedDict[str, CompiledAgent] = OrderedDict()
        self._metrics: AgentMetrics = metrics or NoAgentMetrics()
        self.tally = RunTally()
        self.hits = 0
        self.misses = 0
        run_tracing_bookkeeping_inline()  # the graphs built here run cheaper with these
        build_untraced_unless_tracing()
        reuse_described_tool_copies()

    async def acompile(self, definition: AgentDefinition) -> CompiledAgent:
        """Cached, or built in a worker thread (tens of ms) so the event loop keeps going."""
        cached = self._cached(definition.digest)
        if cached is not None:
            return cached
        return self._store(await asyncio.to_thread(self._build, definition))

    def compile(self, definition: AgentDefinition) -> CompiledAgent:
        cached = self._cached(definition.digest)
        if cached is not None:
            return cached
        return self._store(self._build(definition))

    def _cached(self, digest: str) -> CompiledAgent | None:
        agent = self._cache.get(digest)
        if agent is None:
            self.misses += 1
            return None
        self.hits += 1
        self._cache.move_to_end(digest)
        return agent

    def _store(self, agent: CompiledAgent) -> CompiledAgent:
        if isinstance(self._checkpointer, WritesCoalescer):
            self._checkpointer.send_at_once(delta_channels(agent.graph))
        self._cache[agent.definition.digest] = agent
        self._cache.move_to_end(agent.definition.digest)
        while len(self._cache) > 1 and self._over_budget():  # the newest always stays
            self._cache.popitem(last=False)
        return agent

    def _over_budget(self) -> bool:
        cached = [a.definition for a in self._cache.values()]
        return (len(cached) > self._max_cached
                or sum(d.agents for d in cached) > self._max_agents
                or sum(d.size for d in cached) > self._max_bytes)

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _build(self, definition: AgentDefinition) -> CompiledAgent:
        main = definition.orchestrator
        graph = create_deep_agent(
            model=self._models.create(main.model, main.name),
            tools=self._registry.resolve(main.tools),
            system_prompt=main.system_prompt,
            middleware=self._middleware(main),
            subagents=[self._subagent(s) for s in definition.specialists],
            checkpointer=self._checkpointer,
            name=main.name,
            interrupt_on=_interrupt_on(main),
        )
        return CompiledAgent(graph=graph, definition=definition)

    def _subagent(self, spec: AgentSpec) -> SubAgent:
        return SubAgent(name=spec.name, description=spec.description,
                        system_prompt=spec.system_prompt,
                        model=self._models.create(spec.model, spec.name),
                        tools=self._registry.resolve(spec.tools),
                        middleware=self._middleware(spec),
                        # always its own (empty: none), never the orchestrator's
                        interrupt_on=_interrupt_on(spec))

    def _middleware(self, spec: AgentSpec) -> list[AgentMiddleware[Any, Any, Any]]:
        # deepagents no longer adds the todo list itself; the contract promises it.
        return [TodoListMiddleware(),
                AccountingMiddleware(spec.model.provider, spec.model.model, self._metrics,
                                     self.tally),
                ToolFailureMiddleware(spec.tools, self._metrics)]


def _interrupt_on(spec: AgentSpec) -> dict[str, Any]:
    """The node's human-in-the-loop tools in deepagents' form (HumanInTheLoopMiddleware,
    batched: one interrupt per model turn listing every gated call)."""
    return {tool: {"allowed_decisions": list(allowed)}
            for tool, allowed in spec.interrupt_on.items()}
