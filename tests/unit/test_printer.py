from __future__ import annotations

import io
import json

from agent_executor.adapters.cli.printer import StreamPrinter, wants_colour
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
    event(5, "end", status="completed", run=1,
          result={"output": "done", "files": {"/a.md": "x"}}),
]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


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
    assert "\x1b[" not in text  # not a terminal: no colour
    assert printer.last_seq == 5


def test_each_line_carries_the_time_since_the_start_and_the_last_sums_the_run_up() -> None:
    out, clock = io.StringIO(), Clock()
    printer = StreamPrinter(out, clock=clock)
    printer(EVENTS[0])
    clock.now += 2.5
    printer(EVENTS[2])
    clock.now += 100
    printer(event(9, "end", status="completed", run=2,
                  result={"output": "done", "files": {"/a.md": "x", "/b.md": "y"},
                          "usage": {"model_calls": 3, "input_tokens": 1200, "output_tokens": 34}}))
    lines = out.getvalue().splitlines()
    assert lines[0] == "  0.0s [Orchestrator] Hello"
    assert lines[1].startswith("  2.5s   -> Orchestrator: write_file(")
    assert lines[2] == " 1m42s output: done"
    assert lines[-1] == ("== completed in 1m42s · run 2 · 3 model calls, 1,234 tokens "
                         "(1,200 in, 34 out) · 2 files written")


def test_failed_and_cancelled_summaries_name_the_cause_and_show_no_tokens_they_lack() -> None:
    out = io.StringIO()
    printer = StreamPrinter(out, clock=Clock())
    printer.summary({"status": "failed", "run": 1,
                     "error": {"type": "ModelError", "message": "no key"}})
    printer.summary({"status": "cancelled", "run": 1, "reason": "operator"}, timed=False)
    assert out.getvalue().splitlines() == ["== failed in 0.0s · run 1: ModelError: no key",
                                           "== cancelled run 1: operator"]


def test_usage_without_tokens_shows_the_model_calls_only() -> None:
    out = io.StringIO()
    StreamPrinter(out, clock=Clock()).summary(
        {"status": "completed", "run": 1, "result": {"output": "", "files": {}},
         "usage": {"model_calls": 1, "input_tokens": 0, "output_tokens": 0,
                   "total_tokens": 0}})
    assert out.getvalue().splitlines()[-1] == ("== completed in 0.0s · run 1 · 1 model call "
                                               "· 0 files written")


def test_a_pause_names_the_tools_waiting_for_a_decision() -> None:
    out = io.StringIO()
    StreamPrinter(out, clock=Clock())(event(
        3, "on_interrupt", agent="Orchestrator", interrupt_id="i1",
        requests=[{"tool": "write_file"}, {"tool": "call_service"}]))
    assert out.getvalue() == ("  0.0s || paused: Orchestrator waits for a decision on "
                              "write_file, call_service\n")


def test_colour_per_agent_and_per_kind_on_a_terminal() -> None:
    out = Terminal()
    printer = StreamPrinter(out, colour=wants_colour(out, {}), clock=Clock())
    printer(event(1, "on_llm_stream", agent="Orchestrator", content="a"))
    printer(event(2, "on_llm_stream", agent="architect", content="b"))
    printer(event(3, "on_llm_stream", agent="Orchestrator", content="c"))
    printer(event(4, "on_tool_end", agent="architect", tool="x", output="boom",
                  status="error"))
    lines = out.getvalue().splitlines()
    cyan, magenta, red = "\x1b[36m", "\x1b[35m", "\x1b[31m"
    assert f"{cyan}[Orchestrator]" in lines[0] and f"{magenta}[architect]" in lines[1]
    assert f"{cyan}[Orchestrator]" in lines[2]  # an agent keeps its colour
    assert f"{red}error" in lines[3]


def test_no_colour_when_not_a_terminal_or_no_color_is_set_or_the_terminal_is_dumb() -> None:
    assert wants_colour(Terminal(), {}) is True
    assert wants_colour(io.StringIO(), {}) is False
    assert wants_colour(Terminal(), {"NO_COLOR": "1"}) is False
    assert wants_colour(Terminal(), {"NO_COLOR": ""}) is True  # no-color.org: non-empty
    assert wants_colour(Terminal(), {"TERM": "dumb"}) is False


def test_json_lines() -> None:
    out = io.StringIO()
    printer = StreamPrinter(out, as_json=True)
    for e in EVENTS:
        printer(e)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
