"""The unit tests' `FakeEventStream` under the event-stream contract: it must keep the
real streams' rules (one `end`, last; gapless seq), or unit tests would pass on a lie."""

from __future__ import annotations

import pytest

from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END, LLM_STREAM
from tests.event_stream_contract import EventStreamContract
from tests.unit.fakes import FakeEventStream


class TestFakeEventStream(EventStreamContract):
    @pytest.fixture
    async def stream(self) -> FakeEventStream:
        return FakeEventStream()


async def test_the_fake_records_what_it_refused_and_can_be_down() -> None:
    stream = FakeEventStream()
    writer = await stream.writer("job-1", "trace", run=1)
    await writer.emit(END, {"status": "completed"})
    await writer.emit(LLM_STREAM, {"agent": "a", "content": "late"})
    assert stream.refused == [("job-1", LLM_STREAM)]
    stream.down = True
    with pytest.raises(DependencyUnavailable):
        await stream.subscribe("job-1")
    with pytest.raises(DependencyUnavailable):
        await stream.has_end("job-1", 1)
