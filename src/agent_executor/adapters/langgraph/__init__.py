"""The LangGraph adapter: agent definitions compiled into deep agents and run durably.

    definition.py  agent_definition -> typed specs (spec.py), InvalidAgentDefinition with paths
    models.py      provider -> chat model (scripted.py: the deterministic `scripted` model)
    guarded.py     each model's retries, failure classification and step bound
    provider_errors.py  the one table: provider / transport error -> ModelError(retryable)
    tools.py       the tool registry (built-ins + `agent_executor.tools` entry points)
    compiler.py    specs -> deepagents graph, cached by content hash
    stream.py      LangGraph stream parts -> contract stream events
    state.py       JSON views of the agent state (messages, files)
    runtime.py     LangGraphAgentRuntime, the AgentRuntime port
"""

from agent_executor.adapters.langgraph.runtime import LangGraphAgentRuntime
from agent_executor.adapters.langgraph.tools import ENTRY_POINT_GROUP, ToolRegistry

__all__ = ["ENTRY_POINT_GROUP", "LangGraphAgentRuntime", "ToolRegistry"]
