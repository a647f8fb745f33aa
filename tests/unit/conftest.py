from __future__ import annotations

from typing import Any

import pytest

from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job, parse_job
from tests.unit.fakes import FakeEventStream, FakeLedger, FakeMetrics, FakePublisher, FakeRuntime


def job_data(job_id: str = "job-1", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job_id": job_id, "trace_id": "trace-1",
        "agent_definition": {"name": "t", "nodes": []},
        "input_payload": {"messages": [{"role": "user", "content": "hi"}]},
    }
    data.update(overrides)
    return data


def make_job(job_id: str = "job-1") -> Job:
    return parse_job(job_data(job_id))


class World:
    def __init__(self, runtime: FakeRuntime | None = None, **kwargs: Any) -> None:
        self.ledger = FakeLedger()
        self.runtime = runtime or FakeRuntime()
        self.events = FakeEventStream()
        self.publisher = FakePublisher()
        self.metrics = FakeMetrics()
        options: dict[str, Any] = {"owner": "worker-a", "max_concurrent": 2,
                                   "job_timeout_seconds": 30.0, "lease_seconds": 30.0}
        options.update(kwargs)
        self.execute = ExecuteJob(self.ledger, self.runtime, self.events, self.publisher,
                                  self.metrics, **options)


@pytest.fixture
def world() -> World:
    return World()
