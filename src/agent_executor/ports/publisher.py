from __future__ import annotations

from typing import Protocol

from agent_executor.domain.result import JobResult


class ResultPublisher(Protocol):
    """Publishes a job's one result event (CONTRACT section 6).

    Publishing the same result again is harmless: its event id is
    `{job_id}:{status}`, so consumers and the bus de-duplicate it.
    Raises `DependencyUnavailable` when the bus cannot take it.
    """

    async def publish(self, result: JobResult) -> None:
        ...
