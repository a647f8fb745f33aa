"""Aegra for `python -m bench.peers`: its virtual environment, its database, its server.

The environment (`.bench/aegra-venv`, gitignored) is made once from PyPI and reused
while its stamp matches: `aegra-api` and `sqlalchemy[asyncio]` at the pins below, and
the project's own dependencies (pyproject.toml), every one constrained to the
version requirements.lock gives it, so Aegra runs the graph on the very LangGraph,
deepagents and LangChain that `serve` runs it on (pip fails rather than pick others).
The project's code is not installed: the checkout's `src/` is on Aegra's
`PYTHONPATH`, so Aegra runs the same compiler as `serve` with no reinstall.

The server is `python -m uvicorn aegra_api.main:app`, what `aegra serve` runs, with
auth off (`AUTH_TYPE=noop`), JSON logs at WARNING (Aegra's INFO logs several lines per
run), its pools sized like the service's for the same concurrency, on a database of
its own that Aegra migrates itself (Alembic, at start-up).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from agent_executor.adapters.postgres.checkpointer import pool_sizes
from bench.aegra_graph import GRAPH_ID
from bench.jobs import ROOT
from bench.servers import HOST, Ports
from bench.service import ServerProcess, free_port

logger = logging.getLogger(__name__)
PINS = ("aegra-api==0.6.0", "sqlalchemy[asyncio]==2.1.9")
VENV = ROOT / ".bench" / "aegra-venv"
STAMP = "bench-stamp.json"
# What decides the graph: these must be the same in both environments.
GRAPH_PACKAGES = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres",
                  "langgraph-prebuilt", "deepagents", "langchain", "langchain-core",
                  "langsmith", "ormsgpack", "psycopg", "psycopg-pool")
INSTALL_TIMEOUT = 1200.0
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_constraints(lock_text: str) -> list[str]:
    """`name==version` for every package of a `uv pip compile` lock (hashes, markers
    and comments dropped): a pip constraints file."""
    return [f"{m.group(1)}=={m.group(2)}" for line in lock_text.splitlines()
            if (m := _PINNED.match(line))]


def project_dependencies(pyproject_text: str) -> list[str]:
    dependencies: list[str] = tomllib.loads(pyproject_text)["project"]["dependencies"]
    return dependencies


def stamp(pins: tuple[str, ...], dependencies: list[str], constraints: list[str],
          python: str) -> dict[str, Any]:
    """What the environment was made from; a different one means: make it again."""
    digest = hashlib.sha256(json.dumps([sorted(dependencies), sorted(constraints)])
                            .encode()).hexdigest()
    return {"pins": list(pins), "dependencies_sha256": digest, "python": python}


def stamp_matches(venv: Path, wanted: dict[str, Any]) -> bool:
    try:
        found = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == wanted) and (venv / "bin" / "python").exists()


def ensure_venv(venv: Path = VENV) -> Path:
    """The Aegra environment's python, made first if its stamp does not match."""
    dependencies = project_dependencies((ROOT / "pyproject.toml").read_text())
    constraints = lock_constraints((ROOT / "requirements.lock").read_text())
    wanted = stamp(PINS, dependencies, constraints, sys.version.split()[0])
    python = venv / "bin" / "python"
    if stamp_matches(venv, wanted):
        return python
    print(f"peers: making {venv.relative_to(ROOT)} ({', '.join(PINS)}; needs PyPI) ...",
          file=sys.stderr, flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    (venv.parent / ".gitignore").write_text("*\n")
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    constraints_file = venv / "constraints.txt"
    constraints_file.write_text("\n".join(constraints) + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "-c", str(constraints_file), *PINS, *dependencies], INSTALL_TIMEOUT)
    _run([str(python), "-m", "pip", "check"], 120)
    frozen = _run([str(python), "-m", "pip", "freeze"], 120)
    (venv / "freeze.txt").write_text(frozen)
    (venv / STAMP).write_text(json.dumps(wanted, indent=2) + "\n")  # last: a whole install
    return python


def _run(command: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=_env_without_pythonpath())
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(command[:4])} ... took over {timeout:g}s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def _env_without_pythonpath() -> dict[str, str]:
    """The environment for Aegra's pip and python: only what is installed there counts."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def graph_versions(python: Path | None = None) -> dict[str, str]:
    """The versions of GRAPH_PACKAGES in this interpreter, or in `python`'s."""
    if python is None:
        return {name: _version(name) for name in GRAPH_PACKAGES}
    code = ("import json, importlib.metadata as m\n"
            "def v(n):\n"
            "    try:\n        return m.version(n)\n"
            "    except m.PackageNotFoundError:\n        return 'missing'\n"
            f"print(json.dumps({{n: v(n) for n in {list(GRAPH_PACKAGES)!r}}}))")
    found: dict[str, str] = json.loads(_run([str(python), "-c", code], 60))
    return found


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def version_mismatches(ours: dict[str, str], theirs: dict[str, str]) -> dict[str, str]:
    return {name: f"{ours.get(name)} here, {theirs.get(name)} in Aegra's environment"
            for name in sorted(set(ours) | set(theirs)) if ours.get(name) != theirs.get(name)}


@dataclass(frozen=True)
class AegraDatabase:
    """Aegra's own throwaway database on the test PostgreSQL."""

    name: str
    ports: Ports

    @property
    def url(self) -> str:
        # trust auth ignores the password
        return f"postgresql://postgres:bench@{HOST}:{self.ports.postgres}/{self.name}"

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        try:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except Exception as exc:  # cleanup goes on
            logger.warning("could not drop database %s: %s", self.name, exc)

    async def _admin(self, statement: str) -> None:
        admin = await asyncpg.connect(host=HOST, port=self.ports.postgres, user="postgres",
                                      database="postgres", timeout=10)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()


def write_config(workdir: Path) -> Path:
    """aegra.json: the one graph, the checkout's bench/aegra_graph.py."""
    config = workdir / "aegra.json"
    config.write_text(json.dumps({
        "graphs": {GRAPH_ID: f"{ROOT / 'bench' / 'aegra_graph.py'}:graph"}}, indent=2))
    return config


class AegraProcess(ServerProcess):
    """`python -m uvicorn aegra_api.main:app` (as `aegra serve`) in Aegra's environment."""

    name = "aegra"

    def __init__(self, python: Path, config: Path, database: AegraDatabase,
                 concurrency: int, log: Path, workers: int = 1) -> None:
        port = free_port()
        lg_min, lg_max = pool_sizes(-(-concurrency // workers))  # per uvicorn worker
        env = {"DATABASE_URL": database.url, "AEGRA_CONFIG": str(config),
               "AUTH_TYPE": "noop", "ENV_MODE": "PRODUCTION", "LOG_LEVEL": "WARNING",
               "OTEL_TARGETS": "", "LANGSMITH_TRACING": "false",
               # the service's pool sizes for the same concurrency (Aegra's defaults,
               # 2 and 6 connections, would cap it below C=8)
               "LANGGRAPH_MIN_POOL_SIZE": str(lg_min), "LANGGRAPH_MAX_POOL_SIZE": str(lg_max),
               "SQLALCHEMY_POOL_SIZE": str(lg_max), "SQLALCHEMY_MAX_OVERFLOW": "0",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        super().__init__([str(python), "-m", "uvicorn", "aegra_api.main:app", "--host", HOST,
                          "--port", str(port), "--log-level", "warning", "--no-access-log",
                          *(["--workers", str(workers)] if workers > 1 else [])],
                         env, log, port, cwd=config.parent, ready_path="/ready")
