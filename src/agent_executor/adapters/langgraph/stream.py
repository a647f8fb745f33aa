"""LangGraph stream parts (v2, with subgraphs) to contract stream events (section 7).

- `messages` parts: AI tokens, from the orchestrator and from specialists running
  inside `task`, become `on_llm_stream` tagged with the agent's `config.name`.
- `updates` parts: an AI message's tool calls become `on_tool_start`, a tool
  message `on_tool_end` (same `call_id`, the model's tool-call id), and every
  update `on_state_update` with JSON values only.
- `tasks` parts: tell which agent runs in which namespace (`lc_agent_name`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, ToolCall, ToolMessage
from langgraph.types import StreamMode

from agent_executor.adapters.langgraph.state import message_text, to_json, update_data
from agent_executor.domain import events as ev
from agent_executor.ports.runtime import EventSink

STREAM_MODES: list[StreamMode] = ["messages", "updates", "tasks"]
_INTERNAL_KEYS = frozenset({"__interrupt__", "__metadata__"})


class StreamTranslator:
    def __init__(self, orchestrator: str, emit: EventSink) -> None:
        self._emit = emit
        self._agents: dict[tuple[str, ...], str] = {(): orchestrator}
        self._orchestrator = orchestrator
        self._tool_names: dict[str, str] = {}
        self._last_calls: dict[str, list[ToolCall]] = {}  # agent -> its latest tool calls
        self._interrupt_agents: dict[str, str] = {}  # LangGraph interrupt id -> agent

    def interrupt_agent(self, interrupt_id: str) -> str:
        """The agent whose step raised the interrupt (the deepest namespace it was
        streamed in; a specialist's also reaches the root)."""
        return self._interrupt_agents.get(interrupt_id, self._orchestrator)

    def call_id(self, agent: str, name: str, args: object) -> str:
        """The model's id of `agent`'s latest pending call of `name` with `args`."""
        for call in self._last_calls.get(agent, []):
            if call["name"] == name and call["args"] == args:
                return call["id"] or ""
        return ""

    def remember(self, messages: object) -> None:
        """Tool calls made before a resume, so their `on_tool_end` still names the tool."""
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    self._tool_names[call["id"] or ""] = call["name"]
                if message.tool_calls:
                    self._last_calls[self._orchestrator] = list(message.tool_calls)

    def agent(self, namespace: tuple[str, ...]) -> str:
        """The agent running in `namespace`, else in its nearest known parent."""
        for end in range(len(namespace), -1, -1):
            name = self._agents.get(namespace[:end])
            if name is not None:
                return name
        return self._orchestrator

    async def handle(self, part: Mapping[str, Any]) -> None:
        kind = part.get("type")
        namespace = tuple(part.get("ns") or ())
        data = part.get("data")
        if kind == "tasks" and isinstance(data, Mapping):
            self._learn(namespace, data)
        elif kind == "messages" and isinstance(data, tuple) and len(data) == 2:
            await self._token(namespace, data[0], data[1])
        elif kind == "updates" and isinstance(data, Mapping):
            for pause in data.get("__interrupt__") or ():
                interrupt_id = getattr(pause, "id", None)
                if isinstance(interrupt_id, str):
                    self._interrupt_agents.setdefault(interrupt_id, self.agent(namespace))
            for node, update in data.items():
                if node not in _INTERNAL_KEYS:
                    await self._update(self.agent(namespace), str(node), update)

    def _learn(self, namespace: tuple[str, ...], task: Mapping[str, Any]) -> None:
        metadata = task.get("metadata")
        if namespace not in self._agents and isinstance(metadata, Mapping):
            name = metadata.get("lc_agent_name")
            if isinstance(name, str) and name:
                self._agents[namespace] = name

    async def _token(self, namespace: tuple[str, ...], chunk: object, metadata: object) -> None:
        if not isinstance(chunk, AIMessageChunk | AIMessage):
            return
        text = message_text(chunk)
        if not text:
            return
        name = metadata.get("lc_agent_name") if isinstance(metadata, Mapping) else None
        agent = name if isinstance(name, str) and name else self.agent(namespace)
        await self._emit(ev.LLM_STREAM, {"agent": agent, "content": text})

    async def _update(self, agent: str, node: str, update: object) -> None:
        # A node may write several times in one step (e.g. one Command per tool call).
        for one in update if isinstance(update, list) else [update]:
            if not isinstance(one, Mapping):
                continue
            messages = one.get("messages")
            messages = messages if isinstance(messages, list) else []
            for message in messages:
                if isinstance(message, ToolMessage):
                    tool = message.name or self._tool_names.get(message.tool_call_id, "")
                    await self._emit(ev.TOOL_END, _tool_end(agent, tool, message))
            await self._emit(ev.STATE_UPDATE, {"agent": agent, "node": node,
                                               "update": update_data(one)})
            for message in messages:
                if isinstance(message, AIMessage):
                    if message.tool_calls:
                        self._last_calls[agent] = list(message.tool_calls)
                    for call in message.tool_calls:
                        self._tool_names[call["id"] or ""] = call["name"]
                        await self._emit(ev.TOOL_START, {
                            "agent": agent, "tool": call["name"], "call_id": call["id"] or "",
                            "input": to_json(call["args"])})


def _tool_end(agent: str, tool: str, message: ToolMessage) -> dict[str, Any]:
    return {"agent": agent, "tool": tool, "call_id": message.tool_call_id,
            "output": message_text(message),
            "status": "error" if message.status == "error" else "success"}

