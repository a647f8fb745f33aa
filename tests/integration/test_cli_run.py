"""`agent-executor run JOB.json`: the stream as it happens, and exit codes 0, 1, 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.service import BASE_ENV_DROP, ROOT


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    return subprocess.run([sys.executable, "-m", "agent_executor", "run", *args], cwd=cwd,
                          env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_the_team_example_prints_every_agent_and_exits_0(tmp_path: Path) -> None:
    done = run(str(ROOT / "examples/jobs/spec-builder.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for agent in ("[Orchestrator]", "[requirements-analyst]", "[architect]"):
        assert agent in out
    assert "-> Orchestrator: task(" in out and "-> architect: write_file(" in out
    assert "== completed" in out
    assert "file: /spec/requirements.md" in out and "file: /spec/architecture.md" in out

    again = run(str(ROOT / "examples/jobs/spec-builder.json"), cwd=tmp_path)  # recorded
    assert again.returncode == 0 and "already completed" in again.stderr
    assert "== completed" in again.stdout


def test_json_lines_have_gapless_seq_and_end_last(tmp_path: Path) -> None:
    done = run(str(ROOT / "examples/jobs/hello.json"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event_type"] == "end"


def test_a_failed_job_exits_1(tmp_path: Path) -> None:
    done = run(str(ROOT / "examples/jobs/openai.json"), cwd=tmp_path)
    assert done.returncode == 1
    assert "ModelError" in done.stdout and "OPENAI_API_KEY" in done.stdout


@pytest.mark.parametrize(("content", "needle"), [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    ('{"job_id": "x"}', "data.trace_id: required"),
    ('[]', "expected an object"),
])
def test_invalid_input_exits_2_with_a_clear_message(tmp_path: Path, content: str | None,
                                                    needle: str) -> None:
    path = tmp_path / "job.json"
    if content is not None:
        path.write_text(content)
    done = run(str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_reads_standard_input(tmp_path: Path) -> None:
    hello = (ROOT / "examples/jobs/hello.json").read_text()
    done = run("-", cwd=tmp_path, stdin=hello)
    assert done.returncode == 0, done.stderr
