"""The supervisor's rules with stand-in workers (real processes, no servers): a
worker that cannot start stops the service; restarts back off and give up; a
signal is forwarded and the handed-back jobs added up. `serve` with real workers
is tests/integration/test_serve_workers.py."""

from __future__ import annotations

import logging
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from agent_executor.adapters.config import Settings, load_settings
from agent_executor.adapters.workers import supervisor
from agent_executor.adapters.workers.supervisor import supervise
from tests.integration import worker_targets


def settings(tmp_path: Path, workers: int = 2) -> Settings:
    return load_settings({"WORKERS": str(workers), "AGENT_EXECUTOR_DATA_DIR": str(tmp_path),
                          "SHUTDOWN_GRACE_SECONDS": "1"})


def starts(tmp_path: Path, number: int) -> int:
    return len(list(tmp_path.glob(f"start-{number}-*")))


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == supervisor.logger.name]


def test_a_worker_that_exits_before_it_ever_served_stops_the_service(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(prefix: str) -> str:
        made.append(real_mkdtemp(prefix=prefix, dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(supervisor.tempfile, "mkdtemp", mkdtemp)
    with caplog.at_level(logging.INFO, supervisor.logger.name):
        code = supervise(settings(tmp_path), None, worker_targets.fail_at_start,
                         drain_seconds=5)
    assert code == 1
    failed = [m for m in messages(caplog) if "start-up failed" in m]
    assert failed and re.fullmatch(r"worker [12] \(pid \d+\) exited with code 3 before it "
                                   r"served: start-up failed \(its error is above\); stopping",
                                   failed[0]), messages(caplog)
    assert starts(tmp_path, 1) + starts(tmp_path, 2) <= 2  # no restart at start-up
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # the environment is given back
    assert len(made) == 1 and not Path(made[0]).exists()  # the metrics files are removed


def test_restarts_that_keep_failing_back_off_then_give_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAY_SECONDS", 0.01)
    with caplog.at_level(logging.INFO, supervisor.logger.name):
        code = supervise(settings(tmp_path, workers=1), None,
                         worker_targets.serve_once_then_fail_at_start, drain_seconds=5)
    assert code == 1
    logged = messages(caplog)
    restarts = [m for m in logged if "restarting it in" in m]
    assert [re.sub(r"pid \d+", "pid P", m) for m in restarts] == [
        "worker 1 (pid P) exited with code 4 while serving: restarting it in 0.01s",
        "worker 1 (pid P) exited with code 5 before it served: restarting it in 0.02s",
        "worker 1 (pid P) exited with code 5 before it served: restarting it in 0.04s",
        "worker 1 (pid P) exited with code 5 before it served: restarting it in 0.08s",
        "worker 1 (pid P) exited with code 5 before it served: restarting it in 0.16s"]
    assert re.sub(r"pid \d+", "pid P", logged[-2]) == (
        "worker 1 (pid P) exited with code 5 before it served, 5 restarts in a row: "
        "stopping instead of restarting it again")
    assert starts(tmp_path, 1) == 1 + supervisor.MAX_FAILED_STARTS


def test_sigterm_is_forwarded_to_every_worker_and_their_handed_back_jobs_add_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def terminate_when_both_serve() -> None:
        deadline = time.monotonic() + 60
        while starts(tmp_path, 1) + starts(tmp_path, 2) < 2 or not any(
                "2 workers serving" in m for m in messages(caplog)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor runs in this process

    helper = threading.Thread(target=terminate_when_both_serve)
    with caplog.at_level(logging.INFO, supervisor.logger.name):
        helper.start()
        code = supervise(settings(tmp_path), None, worker_targets.serve_until_sigterm,
                         drain_seconds=5)
        helper.join()
    logged = messages(caplog)
    assert code == 0, logged
    assert any(m.startswith("2 workers serving on") for m in logged)
    assert "SIGTERM received: stopping 2 worker(s); each drains its jobs (up to 1s)" in logged
    assert logged[-1].startswith("stopped: 2 job(s) handed back unfinished")
    assert (starts(tmp_path, 1), starts(tmp_path, 2)) == (1, 1)
