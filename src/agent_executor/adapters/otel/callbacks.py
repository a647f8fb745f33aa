"""Model and tool call spans from LangChain's callbacks.

Chosen over `opentelemetry-instrumentation-langchain` (OpenLLMetry), which patches
LangChain process-wide, makes a span of every runnable (dozens per agent turn in
a deep agent's graph) and exports prompts and completions by default (user
content: CONTRACT section 1 keeps it out of logs and telemetry). This handler
makes only the spans of section 11: one per model call (GenAI semantic
conventions, token counts from the provider's usage metadata) and one per tool
call, nested under the span of the `task` call whose specialist made them, and
under the job span otherwise. It exists only while tracing is on: off, no
handler is added to the run at all.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode


class OtelCallbackHandler(BaseCallbackHandler):
    """One per run: spans under the span current when it was made (the job's)."""

    run_inline = True  # runs in the event loop; no thread hop per event

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._root = otel_context.get_current()
        self._parents: dict[UUID, UUID | None] = {}
        self._spans: dict[UUID, Span] = {}

    # chains are not traced, only followed, so a call nests under its nearest span
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._parents[run_id] = parent_run_id

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._parents.pop(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._parents.pop(run_id, None)

    def on_chat_model_start(self, serialized: dict[str, Any] | None,
                            messages: list[list[BaseMessage]], *, run_id: UUID,
                            parent_run_id: UUID | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        md = metadata or {}
        provider = str(md.get("ls_provider") or "unknown")
        model = str(md.get("ls_model_name") or "unknown")
        self._start(run_id, parent_run_id, f"chat {model}", SpanKind.CLIENT, {
            "gen_ai.operation.name": "chat", "gen_ai.system": provider,
            "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "agent": str(md.get("lc_agent_name") or md.get("langgraph_node") or "")})

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._end(run_id)
        if span is None:
            return
        generation = response.generations[0][0] if response.generations and \
            response.generations[0] else None
        if isinstance(generation, ChatGeneration):
            message = generation.message
            usage = getattr(message, "usage_metadata", None) or {}
            span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("input_tokens", 0)))
            span.set_attribute("gen_ai.usage.output_tokens",
                               int(usage.get("output_tokens", 0)))
            model = (message.response_metadata or {}).get("model_name")
            if isinstance(model, str):
                span.set_attribute("gen_ai.response.model", model)
            if message.id:
                span.set_attribute("gen_ai.response.id", message.id)
        span.end()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._end(run_id)
        if span is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR, type(error).__name__)
            span.end()

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *,
                      run_id: UUID, parent_run_id: UUID | None = None,
                      **kwargs: Any) -> None:
        name = str((serialized or {}).get("name") or kwargs.get("name") or "unknown")
        call_id = str(kwargs.get("tool_call_id") or "")
        self._start(run_id, parent_run_id, f"execute_tool {name}", SpanKind.INTERNAL, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id, "tool": name, "call_id": call_id})

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._end(run_id)
        if span is not None:
            status = getattr(output, "status", "success")
            span.set_attribute("status", status if status in ("success", "error")
                               else "success")
            if status == "error":
                span.set_status(StatusCode.ERROR, "the tool returned an error")
            span.end()

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._end(run_id)
        if span is not None:
            span.set_attribute("status", "error")
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR, type(error).__name__)
            span.end()

    def _start(self, run_id: UUID, parent_run_id: UUID | None, name: str, kind: SpanKind,
               attributes: dict[str, Any]) -> None:
        self._parents[run_id] = parent_run_id
        self._spans[run_id] = self._tracer.start_span(
            name, context=self._context(parent_run_id), kind=kind, attributes=attributes)

    def _end(self, run_id: UUID) -> Span | None:
        self._parents.pop(run_id, None)
        return self._spans.pop(run_id, None)

    def _context(self, run_id: UUID | None) -> otel_context.Context:
        seen = 0
        while run_id is not None and seen < 1000:
            span = self._spans.get(run_id)
            if span is not None:
                return trace.set_span_in_context(span, self._root)
            run_id = self._parents.get(run_id)
            seen += 1
        return self._root


def callbacks_for(tracer: trace.Tracer) -> list[BaseCallbackHandler]:
    """The handlers of one run (made where the run starts, under the job span)."""
    return [OtelCallbackHandler(tracer)]
