"""`agent-executor run JOB.json`: the stream as it happens, and exit codes 0, 1, 2."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
from importlib import metadata
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


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent_executor", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout == f"agent-executor {metadata.version('agent-executor')}\n"


def slow_job(tmp_path: Path) -> Path:
    data = json.loads((ROOT / "examples/jobs/hello.json").read_text())
    model = data["agent_definition"]["nodes"][0]["config"]["model"]
    model["delay_ms"] = 300
    model["responses"] = [{"content": f"Step {i}.", "tool_calls": [
        {"name": "write_file", "args": {"file_path": f"/s{i}.md", "content": "x"}}]}
        for i in range(8)] + [{"content": "Done."}]
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(data))
    return path


def test_ctrl_c_is_one_line_and_exit_130_and_the_job_resumes_after(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    job = slow_job(tmp_path)
    # As on a terminal: a suite started in the background of a script (no job control)
    # inherits SIGINT ignored, and so would the command, which then rightly ignores it.
    proc = subprocess.Popen([sys.executable, "-m", "agent_executor", "run", str(job)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the job runs: its first event is printed
    assert "[Orchestrator]" in line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "agent-executor run: stopped (Ctrl-C); the job is left unfinished with its "
        "checkpoints: run the same job again to resume it"]
    again = run(str(job), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "file: /s7.md" in again.stdout and "Traceback" not in again.stderr


def test_an_interrupted_job_without_a_terminal_is_left_waiting(tmp_path: Path) -> None:
    done = run(str(ROOT / "examples/jobs/approval.json"), cwd=tmp_path)
    assert done.returncode == 1
    assert "|| paused: Orchestrator waits for a decision on write_file" in done.stdout
    assert "waits for a decision; run it again on a terminal" in done.stderr


def test_on_a_terminal_an_interrupted_job_asks_and_runs_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    env["NO_COLOR"] = "1"
    answers = 'maybe\nedit\n{"file_path": "/edited.md", "content": "hi"}\n'
    out = on_a_terminal([sys.executable, "-m", "agent_executor", "run",
                         str(ROOT / "examples/jobs/approval.json")], answers, tmp_path, env)
    assert out.returncode == 0, out.stdout
    text = out.stdout
    assert "[1/1] Orchestrator wants to call write_file with:" in text
    assert '"file_path": "/hello.md",' in text
    assert "please answer approve, edit, reject" in text
    assert "file: /edited.md" in text and "file: /hello.md" not in text
    assert text.rstrip().splitlines()[-1].startswith("== completed in ")
    assert "\x1b[" not in text  # NO_COLOR on a terminal


def test_with_json_the_questions_go_to_stderr_and_stdout_stays_json_lines(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    out = on_a_terminal([sys.executable, "-m", "agent_executor", "run", "--json",
                         str(ROOT / "examples/jobs/approval.json")], "a\n", tmp_path, env,
                        stderr_apart=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    events = [json.loads(line) for line in lines if line != "a"]  # the terminal's echo
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "on_interrupt" in [e["event_type"] for e in events]
    assert events[-1]["event_type"] == "end"
    assert "[1/1] Orchestrator wants to call write_file" in out.stderr


def test_ctrl_c_at_the_prompt_is_one_line_and_the_job_still_waits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    argv = [sys.executable, "-m", "agent_executor", "run",
            str(ROOT / "examples/jobs/approval.json")]
    out = on_a_terminal(argv, "", tmp_path, env, ctrl_c_after="[r]eject? ")
    assert out.returncode == 130
    assert out.stdout.rstrip().endswith("agent-executor run: stopped (Ctrl-C); the job is "
                                        "left unfinished with its checkpoints: run the same "
                                        "job again to resume it")
    assert "Traceback" not in out.stdout
    again = run(str(ROOT / "examples/jobs/approval.json"), cwd=tmp_path)
    assert again.returncode == 1 and "is waiting for a decision" in again.stderr


def on_a_terminal(argv: list[str], typed: str, cwd: Path, env: dict[str, str],
                  ctrl_c_after: str | None = None, stderr_apart: bool = False
                  ) -> subprocess.CompletedProcess[str]:
    """Runs `argv` with a pseudo-terminal as its standard input and output (and error,
    unless `stderr_apart`: then a file); `typed` is waiting in the terminal's input
    before it starts; SIGINT once the output shows `ctrl_c_after`."""
    main, child = pty.openpty()
    errors = (cwd / "stderr.txt").open("w+") if stderr_apart else None
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=errors or child,
                            cwd=cwd, env=env)
    os.close(child)
    os.write(main, typed.encode())
    received = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        assert ready, "no output for 60s"
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child's side closed
            break
        if not chunk:
            break
        received += chunk
        if ctrl_c_after is not None and ctrl_c_after.encode() in received:
            proc.send_signal(signal.SIGINT)
            ctrl_c_after = None
    os.close(main)
    proc.wait(60)
    text = received.decode().replace("\r\n", "\n")
    err = ""
    if errors is not None:
        errors.seek(0)
        err = errors.read()
        errors.close()
    return subprocess.CompletedProcess(argv, proc.returncode, text, err)
