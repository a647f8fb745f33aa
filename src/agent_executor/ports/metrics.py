from __future__ import annotations

from typing import Protocol


class JobMetrics(Protocol):
    """What the use case reports about jobs (never raises)."""

    def job_started(self, source: str) -> None:
        """A job attempt began running (counts toward jobs in progress)."""
        ...

    def job_finished(self, source: str, status: str, duration_seconds: float | None,
                     error_type: str | None = None) -> None:
        """A job attempt ended; `status` is `completed`, `failed` (`error_type` says
        why), `cancelled`, `interrupted` (paused for a decision) or `unfinished`
        (stopped without an outcome: its lease lost, a dependency down, the process
        stopping)."""
        ...

    def job_waiting(self, delta: int) -> None:
        """`delta` claimed jobs began (1) or stopped (-1) waiting for a free slot."""
        ...

    def job_interrupted(self, source: str) -> None:
        """A run paused for a human decision (`interrupts_total`)."""
        ...


class AgentMetrics(Protocol):
    """What the agent runtime reports about model and tool calls (never raises). The
    adapter keeps every label bounded: `model` is a job's choice."""

    def model_call(self, provider: str, model: str, outcome: str, duration_seconds: float,
                   input_tokens: int, output_tokens: int) -> None:
        """One model call ended; `outcome` is `success`, `error` or `cancelled`."""
        ...

    def tool_call(self, tool: str, status: str) -> None:
        """One tool call ended; `status` is `success` or `error`."""
        ...
