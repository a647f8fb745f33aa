"""`run`'s decision loop on fakes: an interrupted job is put to `decide` and resumed
with its answer until it finishes; without `decide` it is left waiting."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent_executor.adapters.cli.run import run_job
from agent_executor.adapters.config import Settings, load_settings
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.interrupts import Interrupt, ToolRequest
from agent_executor.ports.events import EventStream
from tests.unit.conftest import World, job_data

FIRST = Interrupt("int-1", "Orchestrator", (
    ToolRequest("write_file", "c1", {"file_path": "/a.md"}, ("approve", "reject")),))
SECOND = Interrupt("int-2", "Orchestrator", (
    ToolRequest("delete", "c2", {"file_path": "/a.md"}, ("approve", "reject")),))


class Opened:
    def __init__(self, world: World) -> None:
        self.execute: ExecuteJob = world.execute
        self.events: EventStream = world.events


class Person:
    """`decide`: answers each interrupt with its list, keeping what it was shown."""

    def __init__(self, *answers: list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.shown: list[Mapping[str, Any]] = []

    def __call__(self, interrupt: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.shown.append(interrupt)
        if not self.answers:
            raise EOFError  # as `input` at the end of the terminal's input
        return self.answers.pop(0)


async def run(world: World, tmp_path: Path, decide: Person | None) -> int:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job_data()))

    @contextlib.asynccontextmanager
    async def open_service(settings: Settings) -> AsyncIterator[Opened]:
        yield Opened(world)

    return await run_job(load_settings({}), open_service, str(path), as_json=False,
                         decide=decide)


async def test_each_interrupt_is_decided_and_the_job_runs_on_to_the_end(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world.runtime.pauses = [FIRST, SECOND]
    person = Person([{"type": "approve"}], [{"type": "reject", "message": "keep it"}])
    assert await run(world, tmp_path, person) == 0
    assert person.shown == [FIRST.to_data(), SECOND.to_data()]
    resumes = [r.to_data() if r else None for r in world.runtime.resumes]
    assert resumes == [None, {"interrupt_id": "int-1", "decisions": [{"type": "approve"}]},
                       {"interrupt_id": "int-2", "decisions": [
                           {"type": "reject", "message": "keep it"}]}]
    out = capsys.readouterr().out
    assert out.count("|| paused:") == 2
    assert out.rstrip().splitlines()[-1].startswith("== completed in ")
    assert world.ledger.records["job-1"].status == "completed"


async def test_without_decide_the_job_is_left_waiting(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world.runtime.pauses = [FIRST]
    assert await run(world, tmp_path, None) == 1
    assert world.ledger.records["job-1"].status == "interrupted"
    assert "waits for a decision; run it again on a terminal" in capsys.readouterr().err
    person = Person([{"type": "approve"}])  # run again, on a terminal this time
    assert await run(world, tmp_path, person) == 0
    assert person.shown == [FIRST.to_data()]


async def test_no_answer_at_the_prompt_leaves_the_job_waiting(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world.runtime.pauses = [FIRST]
    assert await run(world, tmp_path, Person()) == 1  # its first answer: EOFError
    assert world.ledger.records["job-1"].status == "interrupted"
    assert "waits for a decision" in capsys.readouterr().err
