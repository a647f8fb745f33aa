"""The narrow windows a SIGKILL under load hits now and then (found by
test_worker_kills), each made deterministic:

- between a step's writes being saved and the next checkpoint: the job must
  resume and finish, not be taken for finished with its tool calls unanswered;
- between the result being recorded in the ledger and the `end` stream event
  being sent: the redelivery that finds the job finished sends the missing `end`
  (once; never a second one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.domain.events import END
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import parse_job
from tests.reliability.harness import scripted_job
from tests.unit.fakes import FakeEventStream, FakeLedger, FakeMetrics, FakePublisher, FakeRuntime

HELLO_FILES = {"/hello.md": "# Hello\n\nHello, world!\n"}


@dataclass(frozen=True)
class NoKeys:
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 2
    model_allowed_base_urls: tuple[str, ...] = ()


class StallingSaver(InMemorySaver):
    """Saves normally until its `stall_at`-th checkpoint, which never completes."""

    def __init__(self, stall_at: int) -> None:
        super().__init__()
        self.stall_at = stall_at
        self.puts = 0
        self.stalled = asyncio.Event()

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions) -> RunnableConfig:
        self.puts += 1
        if self.puts == self.stall_at:
            self.stalled.set()
            await asyncio.Event().wait()  # the process dies here
        return await super().aput(config, checkpoint, metadata, new_versions)


async def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    return None


@pytest.mark.parametrize("stall_at", range(2, 8))
# The checkpointer stalls on its n-th `aput` (after the step's `aput_writes`), the
# run is cancelled there, and a fresh runtime (a restarted process) runs the job
# again on the same checkpoints.
async def test_a_run_killed_before_its_checkpoint_resumes_to_the_end(stall_at: int) -> None:
    job = parse_job(scripted_job(delay_ms=0))
    saver = StallingSaver(stall_at)
    first = LangGraphAgentRuntime(saver, NoKeys(), registry=ToolRegistry())
    run = asyncio.create_task(first.run(job, _ignore))
    stalled = asyncio.create_task(saver.stalled.wait())
    done, _ = await asyncio.wait({run, stalled}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    assert stalled in done, f"the run ended before checkpoint #{stall_at}"
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    stalled.cancel()

    saver.stall_at = 0  # the restarted process: same checkpoints, nothing stalls
    second = LangGraphAgentRuntime(saver, NoKeys(), registry=ToolRegistry())
    output = await second.run(job, _ignore)

    assert output.files == HELLO_FILES, output.messages
    assert output.output.startswith("Done:"), output.messages
    assert [m["role"] for m in output.messages].count("user") == 1


async def test_a_job_recorded_finished_but_without_end_gets_its_end_on_redelivery() -> None:
    ledger, events, publisher = FakeLedger(), FakeEventStream(), FakePublisher()

    def worker(owner: str) -> ExecuteJob:
        return ExecuteJob(ledger, FakeRuntime(), events, publisher, FakeMetrics(), owner=owner,
                          max_concurrent=1, job_timeout_seconds=30)
    job = parse_job(scripted_job(delay_ms=0))
    first = await worker("a").execute(job, "nats")
    # The process died right after `ledger.finish`: nothing it emitted reached the stream.
    del events.events[job.job_id][-1]
    assert [e.event_type for e in events.events[job.job_id]].count(END) == 0

    for owner in ("b", "c"):  # the redelivery, then one more
        assert await worker(owner).execute(job, "nats") == first

    stream = events.events[job.job_id]
    assert [e.event_type for e in stream].count(END) == 1
    assert stream[-1].event_type == END and stream[-1].data["status"] == "completed"
    assert [e.seq for e in stream] == list(range(1, len(stream) + 1))
    assert publisher.published == [first, first, first]
