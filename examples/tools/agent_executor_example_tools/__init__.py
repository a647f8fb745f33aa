"""Example tools for agent-executor, registered under the `agent_executor.tools` entry point."""

from __future__ import annotations

from langchain_core.tools import ToolException, tool


@tool
def word_count(text: str) -> dict[str, int]:
    """Count the words, lines and characters of a text (for example a file's content)."""
    if not isinstance(text, str):
        raise ToolException("text must be a string")
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}
