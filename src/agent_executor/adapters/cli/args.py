"""The command line: its arguments and reading a job file for `run`."""

from __future__ import annotations

import argparse
import json
import sys

from agent_executor.adapters.cloudevents_codec import EventNames, read_job
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import Job, parse_job


def load_job_file(path: str, names: EventNames) -> Job:
    """A JobExecutionEvent or a structured CloudEvent from a file (`-`: standard input).

    Raises `OSError` when it cannot be read and `InvalidJob` when it is not a job.
    """
    with (open(path, "rb") if path != "-" else sys.stdin.buffer) as source:  # noqa: SIM115
        raw = source.read()
    if b'"specversion"' in raw:
        return read_job({"content-type": "application/cloudevents+json"}, raw, names)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidJob(f"{path} is not valid JSON: {exc}") from exc
    return parse_job(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-executor",
        description="Run LangGraph deep agents as durable jobs. Configuration comes from "
                    "environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve HTTP on HOST:PORT and consume NATS jobs "
                                      "(when NATS_URL is set)")
    run = commands.add_parser("run", help="run one job in this process and print its stream")
    run.add_argument("job", help="a JobExecutionEvent or a structured CloudEvent as JSON "
                                 "(`-` reads standard input)")
    run.add_argument("--json", action="store_true", help="print stream events as JSON lines")
    prune_cmd = commands.add_parser(
        "prune", help="delete checkpoints and ledger rows of jobs finished before a cut-off")
    prune_cmd.add_argument("--older-than", required=True, metavar="AGE",
                           help="e.g. 7d, 12h, 30m")
    prune_cmd.add_argument("--batch-size", type=int, default=500)
    return parser


