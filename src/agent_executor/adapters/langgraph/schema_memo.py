"""One copy of the described `grep` tool per agent, so its schema is built once.

deepagents' `FilesystemMiddleware` creates `grep` with the description that
mentions the `execute` tool and, on every model call where `execute` is not
available (the virtual filesystem never has it), hands the model a fresh
`model_copy` with the other description. The copy drops langchain's memoized
tool-call schema, and the summarization middleware's token count just inside
then rebuilds it (a pydantic model and its JSON schema): about 0.8 ms of CPU per
model call; keeping the copy took a sixth off a job's CPU (docs/performance.md).
`reuse_described_tool_copies` keeps the copy each middleware made for a tool and
description and hands that one out again: the same tool, the same description,
the memo kept.

Installed by `AgentCompiler` (process-wide, idempotent), as the LangSmith override
(tracing.py); tests/unit/langgraph/test_schema_memo.py fails if a deepagents
upgrade changes what it relies on.
"""

from __future__ import annotations

from typing import Any

from deepagents.middleware.filesystem import FilesystemMiddleware
from langchain_core.tools import BaseTool

_METHOD = "_with_filtered_grep_description"
_KEPT = "_agent_executor_described_copies"


def _reuse(original: Any) -> Any:
    def reusing(self: FilesystemMiddleware, tools: list[Any], **kwargs: Any) -> list[Any]:
        described: list[Any] = original(self, tools, **kwargs)
        if described is tools:
            return tools
        kept: dict[tuple[int, str], tuple[BaseTool, BaseTool]] = self.__dict__.setdefault(
            _KEPT, {})
        reused = []
        for before, after in zip(tools, described, strict=True):
            if isinstance(before, BaseTool) and isinstance(after, BaseTool) \
                    and after is not before:
                # keeping `before` keeps its id from being reused by another tool
                after = kept.setdefault((id(before), after.description), (before, after))[1]
            reused.append(after)
        return reused

    reusing.reuses_copies = True  # type: ignore[attr-defined]
    return reusing


def reuse_described_tool_copies() -> None:
    """Install the reuse on `FilesystemMiddleware` (idempotent)."""
    original = getattr(FilesystemMiddleware, _METHOD, None)
    if original is None or getattr(original, "reuses_copies", False):
        return
    setattr(FilesystemMiddleware, _METHOD, _reuse(original))
