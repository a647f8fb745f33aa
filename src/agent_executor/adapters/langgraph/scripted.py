"""The `scripted` chat model (CONTRACT section 3): deterministic, for tests, demos, benchmarks.

Its n-th answer within a conversation is reply R(n), n being the number of AI
messages already in the messages it is given (past the end: the last reply),
so a resumed run continues where it stopped. It sleeps `delay_ms` before each
answer and streams the content word by word. Its usage is counted in words: the
input tokens are the words of every message it is given, the output tokens the
words of its reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCall, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.config import get_config

from agent_executor.adapters.langgraph.spec import ScriptedReply

_WORDS = re.compile(r"\S+\s*|\s+")


Hook = Callable[[str], Awaitable[None]]


class ScriptedCallLog:
    """How many answers each agent gave on each thread (bounded: oldest threads drop),
    and the test hooks awaited as a call begins (`hold`): a test learns that a model
    call is under way, and may keep it there, without guessing with a sleep."""

    def __init__(self, max_threads: int = 4096) -> None:
        self._max_threads = max_threads
        self._calls: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._hooks: dict[str, Hook] = {}

    @contextmanager
    def hold(self, thread_id: str, hook: Hook) -> Iterator[None]:
        """Await `hook(agent)` at the start of every async call on `thread_id`, before
        its delay and its answer (so a call cancelled there has given no answer)."""
        self._hooks[thread_id] = hook
        try:
            yield
        finally:
            self._hooks.pop(thread_id, None)

    async def begin(self, thread_id: str, agent: str) -> None:
        hook = self._hooks.get(thread_id)
        if hook is not None:
            await hook(agent)

    def record(self, thread_id: str, agent: str) -> None:
        per_agent = self._calls.setdefault(thread_id, {})
        self._calls.move_to_end(thread_id)
        per_agent[agent] = per_agent.get(agent, 0) + 1
        while len(self._calls) > self._max_threads:
            self._calls.popitem(last=False)

    def count(self, thread_id: str, agent: str | None = None) -> int:
        per_agent = self._calls.get(thread_id, {})
        return per_agent.get(agent, 0) if agent is not None else sum(per_agent.values())


class ScriptedChatModel(BaseChatModel):
    agent: str
    replies: tuple[ScriptedReply, ...]
    delay_ms: int = 0
    model_name: str = "scripted"

    calls: ClassVar[ScriptedCallLog] = ScriptedCallLog()
    """Answers given, by thread (`job_id`) and agent: what tests read to see what re-ran."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"agent": self.agent, "model_name": self.model_name}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self  # the script already says which tools it calls

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        time.sleep(self.delay_ms / 1000)
        return _result(self._answer(messages))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        await ScriptedChatModel.calls.begin(_thread_id(), self.agent)
        await asyncio.sleep(self.delay_ms / 1000)
        return _result(self._answer(messages))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        time.sleep(self.delay_ms / 1000)
        for chunk in _chunks(self._answer(messages)):
            if run_manager is not None and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        await ScriptedChatModel.calls.begin(_thread_id(), self.agent)
        await asyncio.sleep(self.delay_ms / 1000)
        for chunk in _chunks(self._answer(messages)):
            if run_manager is not None and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _answer(self, messages: Sequence[BaseMessage]) -> AIMessage:
        n = sum(1 for m in messages if isinstance(m, AIMessage))
        reply = self.replies[min(n, len(self.replies) - 1)]
        ScriptedChatModel.calls.record(_thread_id(), self.agent)
        seed = f"{self.agent}\0{_first_human_text(messages)}\0{n}"
        calls = [ToolCall(name=c.name, args=dict(c.args), id=_call_id(seed, i), type="tool_call")
                 for i, c in enumerate(reply.tool_calls)]
        words_in = sum(len(m.text.split()) for m in messages)
        words_out = len(reply.content.split())
        return AIMessage(content=reply.content, tool_calls=calls,
                         response_metadata={"model_name": self.model_name},
                         usage_metadata=UsageMetadata(input_tokens=words_in,
                                                      output_tokens=words_out,
                                                      total_tokens=words_in + words_out))


def _result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    text = message.content if isinstance(message.content, str) else ""
    for word in _WORDS.findall(text):
        yield ChatGenerationChunk(message=AIMessageChunk(content=word))
    tool_chunks = [ToolCallChunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i,
                                 type="tool_call_chunk")
                   for i, c in enumerate(message.tool_calls)]
    yield ChatGenerationChunk(message=AIMessageChunk(
        content="", tool_call_chunks=tool_chunks, chunk_position="last",
        response_metadata=message.response_metadata, usage_metadata=message.usage_metadata))


def _call_id(seed: str, index: int) -> str:
    """Stable across re-runs of the same turn, distinct across agents, turns and tasks."""
    return "call_" + hashlib.sha256(f"{seed}\0{index}".encode()).hexdigest()[:20]


def _first_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in messages:
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _thread_id() -> str:
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # called outside a graph run
        return ""
    return str(configurable.get("thread_id", ""))
