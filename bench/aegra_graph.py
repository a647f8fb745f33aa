"""The graph `python -m bench.peers` serves through Aegra: the hello job's deep agent
(examples/jobs/hello.json, `scripted` model, `delay_ms` 0), built by the project's own
`AgentCompiler` exactly as `python -m bench` builds its floor's.

Aegra loads this file by the `graphs` entry of the aegra.json the bench writes, in
Aegra's virtual environment (where the project's dependencies are installed and the
checkout's `src/` is on `PYTHONPATH`), awaits `graph()` once and keeps the result; it
runs a copy with its own checkpointer (`AsyncPostgresSaver`) and store attached, so
the graph is compiled here without one.
"""

from __future__ import annotations

from typing import Any

from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.tools import ToolRegistry
from bench.jobs import NoModelKeys, shape_template

GRAPH_ID = "hello"
SHAPE = "single"


async def graph() -> Any:
    registry = ToolRegistry.load()
    template = shape_template(SHAPE)
    compiler = AgentCompiler(None, ChatModelFactory(NoModelKeys()),  # type: ignore[arg-type]
                             registry)
    agent = await compiler.acompile(parse_definition(template["agent_definition"],
                                                     registry.names()))
    return agent.graph
