"""`AgentRuntime` on LangGraph deep agents, durable on a LangGraph checkpointer.

The job's `job_id` is the thread. Before running, the thread's checkpoint
decides: none, start with the input; pending work, resume with no input (the
input is never appended twice); finished, return its final state unrun.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphRecursionError
from langgraph.types import StateSnapshot

from agent_executor.adapters.langgraph.accounting import USAGE_KEY, merge_calls, usage_of
from agent_executor.adapters.langgraph.compiler import (
    DEFAULT_CACHE_SIZE,
    AgentCompiler,
    CompiledAgent,
)
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.guarded import step_limit_message
from agent_executor.adapters.langgraph.hitl import interrupt_id, resume_command, to_interrupt
from agent_executor.adapters.langgraph.models import ChatModelFactory, ProviderSettings
from agent_executor.adapters.langgraph.provider_errors import classify
from agent_executor.adapters.langgraph.state import agent_output, input_files
from agent_executor.adapters.langgraph.stream import STREAM_MODES, StreamTranslator
from agent_executor.adapters.langgraph.tools import ToolRegistry
from agent_executor.domain.errors import (
    AgentError,
    AgentExecutorError,
    DependencyUnavailable,
    StepLimitExceeded,
)
from agent_executor.domain.interrupts import Interrupt, Resume
from agent_executor.domain.job import Job
from agent_executor.domain.result import AgentOutput
from agent_executor.domain.usage import NO_LIMITS, Limits, Usage
from agent_executor.ports.metrics import AgentMetrics
from agent_executor.ports.runtime import EventSink

logger = logging.getLogger(__name__)

_INTERRUPT = "__interrupt__"  # the update key LangGraph streams an interrupt under

STEP_LIMIT = 200
"""Supersteps one agent may take in a run (LangGraph's `recursion_limit`; deepagents
sets 9,999). One model turn with its tool calls is about 2 to 4 supersteps, so 200
is some 50-100 turns; each specialist's own run has the same bound."""


class LangGraphAgentRuntime:
    """Compiles each job's `agent_definition` (cached) and runs it on `checkpointer`.

    `settings` supplies the provider keys (`adapters.config.Settings` does);
    `registry` the tools `config.tools` may name (default: built-ins plus the
    `agent_executor.tools` entry points); `default_limits` the budget of a job whose
    `limits` leave one unset (JOB_MAX_*); `callbacks` makes, for each run, the
    LangChain callback handlers it runs with (tracing), called where the run starts.
    """

    def __init__(self, checkpointer: BaseCheckpointSaver[Any], settings: ProviderSettings, *,
                 registry: ToolRegistry | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE, step_limit: int = STEP_LIMIT,
                 metrics: AgentMetrics | None = None, default_limits: Limits = NO_LIMITS,
                 callbacks: Callable[[], list[BaseCallbackHandler]] | None = None) -> None:
        self.registry = registry if registry is not None else ToolRegistry.load()
        self.step_limit = step_limit
        self.default_limits = default_limits
        self._callbacks = callbacks
        self.compiler = AgentCompiler(checkpointer,
                                      ChatModelFactory(settings, step_limit=step_limit),
                                      self.registry, max_cached=cache_size, metrics=metrics)
        # the usage of the last runs' final states, so `usage` reads no checkpoint
        self._final_usage: OrderedDict[str, Usage] = OrderedDict()
        # the calls of a failed run that its thread state may not hold (a failed task)
        self._unsaved_calls: dict[str, dict[str, Any]] = {}

    async def run(self, job: Job, emit: EventSink,
                  resume: Resume | None = None) -> AgentOutput | Interrupt:
        definition = parse_definition(job.agent_definition, self.registry.names())
        config = self._config(job)
        try:
            agent = await self.compiler.acompile(definition)
            snapshot = await agent.graph.aget_state(config)
            # Finished means no task left in the step, not an empty `next`: a process
            # that died after a step's writes were saved but before its checkpoint
            # leaves tasks that all have writes, so `next` is empty mid-run.
            if snapshot.created_at is not None and not snapshot.tasks:
                logger.info("thread already finished; returning its final state",
                            extra={"job_id": job.job_id, "trace_id": job.trace_id})
                self._remember(job, snapshot.values)
                return agent_output(snapshot.values)
            translator = StreamTranslator(agent.orchestrator, emit)
            try:
                values = await self._stream(agent, job, snapshot, config, translator, resume)
            except BaseException:
                self._unsaved_calls[job.job_id] = self.compiler.tally.take(job.job_id)
                raise
            self.compiler.tally.take(job.job_id)
            if values is None:  # paused: the checkpoint holds what waits for a decision
                snapshot = await agent.graph.aget_state(config)
                if not snapshot.interrupts:
                    raise AgentError(f"the agent stopped with work pending "
                                     f"({', '.join(snapshot.next)}) and nothing to decide")
                return to_interrupt(snapshot.interrupts, translator)
        except AgentExecutorError:  # already a domain error (ModelError, ToolError, ...)
            raise
        except Exception as exc:
            raise _translate(exc, job, self.step_limit) from exc
        self._remember(job, values)
        return agent_output(values)

    async def usage(self, job: Job) -> Usage:
        remembered = self._final_usage.pop(job.job_id, None)
        unsaved = self._unsaved_calls.pop(job.job_id, {})
        if remembered is not None:
            return remembered
        try:
            definition = parse_definition(job.agent_definition, self.registry.names())
            agent = await self.compiler.acompile(definition)
        except AgentExecutorError:  # a definition that never ran spent nothing
            return Usage()
        try:
            snapshot = await agent.graph.aget_state(self._config(job))
        except Exception as exc:
            raise _translate(exc, job, self.step_limit) from exc
        return usage_of({USAGE_KEY: merge_calls(snapshot.values.get(USAGE_KEY), unsaved)})

    def _config(self, job: Job) -> RunnableConfig:
        limits = job.limits.over(self.default_limits)
        config: RunnableConfig = {
            "configurable": {"thread_id": job.job_id},
            "metadata": {"job_id": job.job_id, "trace_id": job.trace_id, **limits.to_data()},
            "recursion_limit": self.step_limit,
        }
        if self._callbacks is not None:
            config["callbacks"] = self._callbacks()
        return config

    def _remember(self, job: Job, values: Mapping[str, Any]) -> None:
        self._final_usage[job.job_id] = usage_of(values)
        while len(self._final_usage) > 1024:
            self._final_usage.popitem(last=False)

    async def _stream(self, agent: CompiledAgent, job: Job, snapshot: StateSnapshot,
                      config: RunnableConfig, translator: StreamTranslator,
                      resume: Resume | None) -> Mapping[str, Any] | None:
        """Run to the end, translating the stream; the final state (the last `values`
        part of the root graph: no checkpoint read afterwards), or None when the run
        paused for a decision."""
        graph_input: Any
        log = {"job_id": job.job_id, "trace_id": job.trace_id}
        if snapshot.created_at is None:
            graph_input = _initial_state(job)
        else:
            translator.remember(snapshot.values.get("messages"))
            pending = snapshot.interrupts
            if pending and resume is not None and resume.interrupt_id == interrupt_id(pending):
                logger.info("resuming thread with %d decision(s)", len(resume.decisions),
                            extra=log)
                graph_input = resume_command(pending, resume)
            else:
                # a pause without its decisions (a crash before they were applied, or
                # after they were): running on pauses again with the same interrupt
                logger.info("resuming thread from its last checkpoint (next: %s)",
                            ", ".join(snapshot.next), extra=log)
                graph_input = None
        # durability="sync": each step's checkpoint is saved before the next step
        # starts, so a crash re-runs at most the step that was in flight.
        final: Mapping[str, Any] | None = None
        interrupted = False
        async for part in agent.graph.astream(graph_input, config,
                                              stream_mode=[*STREAM_MODES, "values"],
                                              subgraphs=True, version="v2", durability="sync"):
            if part["type"] == "values":
                if not part["ns"]:
                    final = part["data"]
                continue
            if part["type"] == "updates" and _INTERRUPT in part["data"]:
                interrupted = True
            await translator.handle(part)
        return None if interrupted else final


def _initial_state(job: Job) -> dict[str, Any]:
    state = {key: value for key, value in job.input_payload.items() if key != "messages"}
    if "files" in state:
        state["files"] = input_files(state["files"])
    state["messages"] = [dict(m) for m in job.messages]
    return state


def _translate(exc: Exception, job: Job, step_limit: int) -> Exception:
    """The one place driver errors become domain errors (a model call's own failures are
    classified where it is made, `guarded.py`; `classify` here catches the rest)."""
    module = type(exc).__module__.split(".")[0]
    name = type(exc).__name__
    if module == "psycopg" or module == "psycopg_pool" or isinstance(exc, sqlite3.Error):
        return DependencyUnavailable(f"checkpoint store failed: {name}: {exc}")
    if isinstance(exc, GraphRecursionError):
        return StepLimitExceeded(step_limit_message(step_limit))
    if isinstance(exc, OSError):  # a model call's own are classified in guarded.py
        return DependencyUnavailable(f"checkpoint store failed: {name}: {exc}")
    model_error = classify(exc)
    if model_error is not None:
        return model_error
    logger.error("agent raised unexpectedly", exc_info=exc,
                 extra={"job_id": job.job_id, "trace_id": job.trace_id})
    return AgentError(f"{name}: {exc}")
