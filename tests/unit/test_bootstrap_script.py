"""scripts/bootstrap-venv.sh skips the install when nothing changed, and starts offline
with a complete venv. Run on a copy of the project whose `.venv/bin/python` is a
stand-in that logs each pip call and answers as told (offline: pip fails)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """#!/usr/bin/env bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "$*" >>"$(dirname "$0")/../pip-calls"
  if [ -f "$(dirname "$0")/../offline" ]; then
    echo "WARNING: Location 'file:///x' is ignored"
    echo "ERROR: Could not find a version that satisfies the requirement starlette==1.10.0"
    exit 1
  fi
  touch "$(dirname "$0")/../importable"; exit 0
fi
if [ "$1" = -c ]; then [ -f "$(dirname "$0")/../importable" ]; exit; fi
exit 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/bootstrap-venv.sh", tmp_path / "scripts")
    python = tmp_path / ".venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text(STAND_IN)
    python.chmod(0o755)
    return tmp_path


def bootstrap(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(project / "scripts/bootstrap-venv.sh"), *args],
                          capture_output=True, text=True, timeout=60)


def pip_calls(project: Path) -> int:
    calls = project / ".venv/pip-calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_installs_once_then_skips_until_pyproject_or_the_lock_changes(project: Path) -> None:
    assert bootstrap(project).returncode == 0
    assert pip_calls(project) == 1
    done = bootstrap(project)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert pip_calls(project) == 1  # skipped
    with (project / "requirements.lock").open("a") as lock:
        lock.write("# changed\n")
    assert bootstrap(project).returncode == 0
    assert pip_calls(project) == 2
    assert bootstrap(project, "dev").returncode == 0  # another extra: its own stamp
    assert pip_calls(project) == 3


def test_offline_with_a_complete_venv_it_starts(project: Path) -> None:
    assert bootstrap(project).returncode == 0
    (project / ".venv/offline").touch()
    assert bootstrap(project).returncode == 0 and pip_calls(project) == 1  # stamp: no pip
    (project / ".venv/.installed").unlink()  # a venv from before the stamp
    done = bootstrap(project)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "bootstrap-venv: could not update .venv (ERROR: Could not find a version that "
        "satisfies the requirement starlette==1.10.0); using it as it is"]


def test_offline_without_an_install_fails_saying_why(project: Path) -> None:
    (project / ".venv/offline").touch()
    done = bootstrap(project)
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith("bootstrap-venv: installing into .venv failed: ERROR: Could not")
    assert "WARNING: Location" not in done.stderr
