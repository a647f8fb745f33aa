"""The tool registry: built-in tools plus those installed packages register.

A package registers a tool under the entry-point group `agent_executor.tools`
(docs/tools.md); the entry point's name is the name `config.tools` uses, and
it loads a langchain `BaseTool` or a plain (sync or async) function.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from agent_executor.domain.errors import JobFailure, ToolError
from agent_executor.ports.metrics import AgentMetrics

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "agent_executor.tools"


@tool
def current_time(timezone: str = "UTC") -> str:
    """The current date and time (ISO 8601) in an IANA time zone such as Europe/Paris."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolException(f"unknown time zone {timezone!r}") from exc
    return datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")


BUILTIN_TOOLS: tuple[BaseTool, ...] = (current_time,)


class ToolRegistry:
    """Tools by name. Built once at start-up; a tool that fails to load is logged and
    left out, and a definition naming it is invalid (the message says why)."""

    def __init__(self, tools: Iterable[BaseTool] = BUILTIN_TOOLS,
                 broken: Mapping[str, str] | None = None) -> None:
        self._tools = {t.name: _recoverable(t) for t in tools}
        self.broken: dict[str, str] = dict(broken or {})

    @classmethod
    def load(cls, entry_point_group: str = ENTRY_POINT_GROUP) -> ToolRegistry:
        """Built-ins plus every tool installed under the entry-point group."""
        tools = {t.name: t for t in BUILTIN_TOOLS}
        broken: dict[str, str] = {}
        for ep in entry_points(group=entry_point_group):
            try:
                tools[ep.name] = tool_from_entry_point(ep)
            except Exception as exc:  # a broken plug-in must not stop the service
                broken[ep.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("tool entry point %s (%s) failed to load: %s", ep.name, ep.value,
                               broken[ep.name])
        return cls(tools.values(), broken)

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def resolve(self, names: Sequence[str]) -> list[BaseTool]:
        return [self._tools[name] for name in names]


def tool_from_entry_point(ep: EntryPoint) -> BaseTool:
    """The entry point's BaseTool (renamed to the entry-point name), or its function as a tool."""
    loaded = ep.load()
    if isinstance(loaded, BaseTool):
        return loaded if loaded.name == ep.name else loaded.model_copy(update={"name": ep.name})
    if callable(loaded):
        description = inspect.getdoc(loaded) or f"The {ep.name} tool."
        if inspect.iscoroutinefunction(loaded):
            return StructuredTool.from_function(coroutine=loaded, name=ep.name,
                                                description=description)
        return StructuredTool.from_function(func=loaded, name=ep.name, description=description)
    raise TypeError(f"{ep.value} is neither a langchain BaseTool nor a callable")


def _recoverable(t: BaseTool) -> BaseTool:
    """A `ToolException` goes back to the model as an error result it can act on."""
    if t.handle_tool_error:
        return t
    return t.model_copy(update={"handle_tool_error": True})


class ToolFailureMiddleware(AgentMiddleware[Any, Any, Any]):
    """Any other exception a registry tool raises fails the job with `ToolError`; every
    tool call is counted (`tool_calls_total`), under the name of a tool the agent has
    (`unknown` for a name a model made up)."""

    def __init__(self, tool_names: Iterable[str], metrics: AgentMetrics | None = None) -> None:
        super().__init__()
        self._names = frozenset(tool_names)
        self._metrics = metrics

    @property
    def name(self) -> str:
        return "AgentExecutorToolFailure"

    async def awrap_tool_call(
        self, request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        try:
            result = await handler(request)
        except GraphBubbleUp:
            raise
        except BaseException as exc:
            self._count(request, "error")
            name = request.tool_call["name"]
            if isinstance(exc, JobFailure) or not isinstance(exc, Exception) \
                    or name not in self._names:
                raise
            raise ToolError(f"tool {name!r} failed: {type(exc).__name__}: {exc}") from exc
        failed = isinstance(result, ToolMessage) and result.status == "error"
        self._count(request, "error" if failed else "success")
        return result

    def _count(self, request: ToolCallRequest, status: str) -> None:
        if self._metrics is not None:
            tool = request.tool.name if request.tool is not None else "unknown"
            self._metrics.tool_call(tool, status)
