"""scripts/test-services.sh says early, one line each, what the machine lacks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "cat", "dirname", "id", "ls", "sort", "tail", "mkdir")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bare = tmp_path / "bin"  # coreutils only: no redis-server, nats-server or initdb
    bare.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None
        if not (bare / tool).exists():
            (bare / tool).symlink_to(found)
    ports = {"TEST_POSTGRES_PORT": str(free_port()), "TEST_DRAGONFLY_PORT": str(free_port()),
             "TEST_NATS_PORT": str(free_port())}
    return subprocess.run([str(bare / "bash"), str(ROOT / "scripts/test-services.sh"),
                           command], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bare), "TEST_SERVICES_DIR": str(tmp_path / "s"),
                               "TEST_POSTGRES_BIN": str(tmp_path / "no-postgres"),
                               **ports, **env})


def test_each_missing_server_is_one_line_and_start_fails_before_starting_anything(
        tmp_path: Path) -> None:
    for command in ("check", "start"):
        done = services(command, tmp_path)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert lines[0] == "test-services: this machine lacks what the integration tests need:"
        missing = [line for line in lines[1:] if line.startswith("  missing: ")]
        assert missing == lines[1:]
        assert missing[0].startswith("  missing: PostgreSQL server binaries (initdb, pg_ctl")
        assert "TEST_POSTGRES_PORT" in missing[0]
        assert any(m.startswith("  missing: redis-server") and "TEST_DRAGONFLY_PORT" in m
                   for m in missing)
        assert any(m.startswith("  missing: nats-server") and "TEST_NATS_PORT" in m
                   for m in missing)
        assert not (tmp_path / "s" / "started").exists()


def test_a_server_already_listening_needs_nothing_installed(tmp_path: Path) -> None:
    with socket.socket() as pg, socket.socket() as redis, socket.socket() as nats:
        for s in (pg, redis, nats):
            s.bind(("127.0.0.1", 0))
            s.listen()
        done = services("check", tmp_path, TEST_POSTGRES_PORT=str(pg.getsockname()[1]),
                        TEST_DRAGONFLY_PORT=str(redis.getsockname()[1]),
                        TEST_NATS_PORT=str(nats.getsockname()[1]))
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as postgres")
def test_the_postgres_user_is_named_when_root_lacks_it(tmp_path: Path) -> None:
    fake_id = tmp_path / "bin" / "id"
    services("check", tmp_path)  # builds bin/
    fake_id.unlink()
    fake_id.write_text('#!/bin/bash\n[ "$1" = -u ] && [ -z "$2" ] && { echo 0; exit 0; }\n'
                       'exit 1\n')
    fake_id.chmod(0o755)
    done = services("check", tmp_path)
    assert any("the 'postgres' user" in line for line in done.stderr.splitlines())
