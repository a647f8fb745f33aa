"""The terminal prompt for an interrupted job, driven by a scripted person."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from agent_executor.adapters.cli.prompt import ask_decisions
from agent_executor.domain.interrupts import Interrupt, read_decisions

INTERRUPT: dict[str, Any] = {
    "agent": "Orchestrator", "interrupt_id": "i-1",
    "requests": [
        {"tool": "write_file", "call_id": "c1", "input": {"file_path": "/a.md", "content": "x"},
         "allowed_decisions": ["approve", "edit", "reject"]},
        {"tool": "call_service", "call_id": "c2", "input": {"url": "https://x"},
         "allowed_decisions": ["approve", "reject"]},
    ]}


class Person:
    """Answers the prompts in order and keeps what it was asked and shown."""

    def __init__(self, answers: Iterable[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []
        self.shown: list[str] = []

    def ask(self, prompt: str) -> str:
        self.asked.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def say(self, line: str) -> None:
        self.shown.append(line)


def test_shows_each_call_and_returns_one_decision_each_that_the_service_accepts() -> None:
    person = Person(["a", "reject", "not safe"])
    decisions = ask_decisions(INTERRUPT, person.ask, person.say)
    assert decisions == [{"type": "approve"}, {"type": "reject", "message": "not safe"}]
    read_decisions(decisions, Interrupt.from_data(INTERRUPT))  # raises if not acceptable
    shown = "\n".join(person.shown)
    assert "[1/2] Orchestrator wants to call write_file with:" in shown
    assert '      "file_path": "/a.md",' in shown  # pretty JSON, indented
    assert "[2/2] Orchestrator wants to call call_service" in shown
    assert person.asked[0] == "[a]pprove / [e]dit / [r]eject? "
    assert person.asked[1] == "[a]pprove / [r]eject? "  # only what the tool allows


def test_only_allowed_answers_are_taken() -> None:
    person = Person(["", "maybe", "e", "a"])  # edit is not allowed for call_service
    only = {**INTERRUPT, "requests": INTERRUPT["requests"][1:]}
    assert ask_decisions(only, person.ask, person.say) == [{"type": "approve"}]
    assert len(person.asked) == 4
    assert person.shown.count("  please answer approve, reject (or its first letter)") == 3


def test_an_edit_is_asked_again_until_it_is_a_json_object() -> None:
    person = Person(["edit", "{bad", "[1]", '{"file_path": "/b.md", "content": "y"}', "a"])
    decisions = ask_decisions(INTERRUPT, person.ask, person.say)
    assert decisions[0] == {"type": "edit", "input": {"file_path": "/b.md", "content": "y"}}
    assert any(line.startswith("  not valid JSON") for line in person.shown)
    assert any("expected a JSON object" in line for line in person.shown)


def test_a_rejection_without_a_message_still_tells_the_agent_something() -> None:
    person = Person(["r", "", "r", "no"])
    decisions = ask_decisions(INTERRUPT, person.ask, person.say)
    assert decisions == [{"type": "reject", "message": "write_file was rejected"},
                         {"type": "reject", "message": "no"}]


def test_nobody_answering_ends_the_prompt() -> None:
    with pytest.raises(EOFError):
        ask_decisions(INTERRUPT, Person(["a"]).ask, Person([]).say)
