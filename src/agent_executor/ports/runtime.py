from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from agent_executor.domain.interrupts import Interrupt, Resume
from agent_executor.domain.job import Job
from agent_executor.domain.result import AgentOutput
from agent_executor.domain.usage import Usage

EventSink = Callable[[str, Mapping[str, Any]], Awaitable[None]]
"""`await emit(event_type, data)`: hands one stream event (section 7) to the use case."""


class AgentRuntime(Protocol):
    """Runs a job's agent on the durable thread `job.job_id`.

    Resumable: if the thread already has a checkpoint with pending work, the run
    continues from it without appending the input again; if the checkpoint is
    finished, its final state is returned without running anything.

    Raises a `JobFailure` subclass when the job fails (`InvalidAgentDefinition`
    before anything runs, `ModelError`, `ToolError`, `AgentError`) and
    `DependencyUnavailable` when the checkpoint store fails.
    """

    async def run(self, job: Job, emit: EventSink,
                  resume: Resume | None = None) -> AgentOutput | Interrupt:
        """Run or resume; `emit` each `on_llm_stream`/`on_tool_*`/`on_state_update`.

        Returns the `Interrupt` when the run pauses before tools a person must decide
        on (the node's `interrupt_on`): the thread keeps the pause. A later run with
        `resume` (its `interrupt_id` the pending one's) continues with those decisions;
        a run without them pauses again at the same interrupt."""
        ...

    async def usage(self, job: Job) -> Usage:
        """What the job's thread spent on models over all its runs, read from its
        checkpoint (zero when it has none). Budgets (`job.limits` over the runtime's
        defaults) are enforced by `run`: the model call that would pass one is not
        made, and `BudgetExceeded` is raised. Raises `DependencyUnavailable`."""
        ...
