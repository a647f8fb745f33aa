"""Example tools for agent-executor, registered under the `agent_executor.tools` entry point."""

from __future__ import annotations

import os
import signal

from langchain_core.tools import ToolException, tool

# Test-only: the reliability suite's poison job. Without this variable set in the
# worker's own environment the tool does nothing, so no payload can use it.
CRASH_TOOL_VARIABLE = "AGENT_EXECUTOR_EXAMPLE_CRASH_TOOL"
# Test-only: the reliability suite's outage. While the file this variable names exists,
# `call_service` fails (the job fails with ToolError); remove it and a retry completes.
OUTAGE_FILE_VARIABLE = "AGENT_EXECUTOR_EXAMPLE_OUTAGE_FILE"


@tool
def word_count(text: str) -> dict[str, int]:
    """Count the words, lines and characters of a text (for example a file's content)."""
    if not isinstance(text, str):
        raise ToolException("text must be a string")
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}


@tool
def crash_worker() -> str:
    """Test only: SIGKILL the worker process running this job (a job that kills its
    worker every time it runs). Refused unless the worker's operator enabled it."""
    if os.environ.get(CRASH_TOOL_VARIABLE) != "1":
        raise ToolException(f"crash_worker is disabled ({CRASH_TOOL_VARIABLE} is not 1)")
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@tool
def call_service(request: str) -> str:
    """Call a downstream service with `request` (an example of a tool whose dependency can
    be down). Test only: it fails while the file named by the worker's
    AGENT_EXECUTOR_EXAMPLE_OUTAGE_FILE exists."""
    outage = os.environ.get(OUTAGE_FILE_VARIABLE)
    if outage and os.path.exists(outage):
        raise RuntimeError("the downstream service is unavailable")  # fails the job
    return f"the service answered {request!r}"
