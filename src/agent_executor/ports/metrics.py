from __future__ import annotations

from typing import Protocol


class JobMetrics(Protocol):
    """What the use case reports about jobs (never raises)."""

    def job_started(self, source: str) -> None:
        """A job attempt began running (counts toward jobs in progress)."""
        ...

    def job_finished(self, source: str, status: str, duration_seconds: float | None) -> None:
        """A job attempt ended; `status` is `completed`, `failed` or `interrupted`."""
        ...
