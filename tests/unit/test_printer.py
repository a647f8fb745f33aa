from __future__ import annotations

import io
import json

from agent_executor.adapters.cli.printer import StreamPrinter
from agent_executor.domain.events import StreamEvent


def event(seq: int, event_type: str, **data: object) -> StreamEvent:
    return StreamEvent(event_type, "j", "t", seq, "2026-11-24T10:00:00.000Z", data)


EVENTS = [
    event(1, "on_llm_stream", agent="Orchestrator", content="Hello"),
    event(2, "on_llm_stream", agent="Orchestrator", content=" world"),
    event(3, "on_tool_start", agent="Orchestrator", tool="write_file", call_id="c1",
          input={"file_path": "/a.md"}),
    event(4, "on_tool_end", agent="Orchestrator", tool="write_file", call_id="c1",
          output="ok", status="success"),
    event(5, "end", status="completed", result={"output": "done", "files": {"/a.md": "x"}}),
]


def test_readable_output_joins_tokens_and_shows_tools_and_the_end() -> None:
    out = io.StringIO()
    printer = StreamPrinter(out)
    for e in EVENTS:
        printer(e)
    text = out.getvalue()
    assert "[Orchestrator] Hello world\n" in text
    assert "-> Orchestrator: write_file(" in text
    assert "<- Orchestrator: write_file success: ok" in text
    assert "== completed" in text and "file: /a.md" in text


def test_json_lines() -> None:
    out = io.StringIO()
    printer = StreamPrinter(out, as_json=True)
    for e in EVENTS:
        printer(e)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
