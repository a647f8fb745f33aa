"""Stream events: the live progress of a job (CONTRACT section 7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LLM_STREAM = "on_llm_stream"
TOOL_START = "on_tool_start"
TOOL_END = "on_tool_end"
STATE_UPDATE = "on_state_update"
INTERRUPT = "on_interrupt"
END = "end"
EVENT_TYPES = frozenset({LLM_STREAM, TOOL_START, TOOL_END, STATE_UPDATE, INTERRUPT, END})


@dataclass(frozen=True)
class StreamEvent:
    event_type: str
    job_id: str
    trace_id: str
    seq: int
    ts: str
    data: Mapping[str, Any]

    def to_data(self) -> dict[str, Any]:
        return {"event_type": self.event_type, "job_id": self.job_id,
                "trace_id": self.trace_id, "seq": self.seq, "ts": self.ts,
                "data": dict(self.data)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StreamEvent:
        return cls(data["event_type"], data["job_id"], data["trace_id"], int(data["seq"]),
                   data["ts"], data["data"])


def ends_run(event: StreamEvent, run: int) -> bool:
    """Whether `event` is the `end` of run `run` or of a later one: where a follower of
    run `run` stops (a stream's ends come in run order). An `end` without `run` in its
    data (written before jobs had runs) ends run 1."""
    if event.event_type != END:
        return False
    ended = event.data.get("run", 1)
    return isinstance(ended, int) and ended >= run


def utc_timestamp() -> str:
    """`2026-11-24T10:00:00.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
