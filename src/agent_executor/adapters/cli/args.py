"""The command line: its arguments and reading a job file for `run`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata

from agent_executor.adapters.cloudevents_codec import EventNames, read_job
from agent_executor.domain.errors import InvalidJob
from agent_executor.domain.job import Job, parse_job

DEFAULT_URL = "http://localhost:8080"
TOKEN_VARIABLE = "AGENT_EXECUTOR_TOKEN"


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


def package_version() -> str:
    try:
        return metadata.version("agent-executor")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not between 0 and 65535")
    return port


def _remote(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            help_text: str, description: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=description)
    sub.add_argument("job_id", metavar="JOB_ID")
    sub.add_argument("--url", default=DEFAULT_URL,
                     help=f"the running service (default {DEFAULT_URL})")
    sub.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE),
                     help=f"a bearer token from the service's API_TOKENS (default: "
                          f"${TOKEN_VARIABLE})")
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-executor",
        description="Run LangGraph deep agents as durable jobs. `serve` and `run` take "
                    "their configuration from environment variables (README, Configuration); "
                    "`status`, `cancel`, `resume` and `retry` steer jobs of a running "
                    "service by URL.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="serve the HTTP API and consume NATS jobs (when NATS_URL is set)",
        description="Serve the HTTP API, health, readiness and metrics on HOST:PORT, "
                    "and consume jobs from NATS when NATS_URL is set. SIGTERM or Ctrl-C "
                    "stops it gracefully (SHUTDOWN_GRACE_SECONDS).")
    serve.add_argument("--host", help="address to listen on (overrides HOST; default 0.0.0.0)")
    serve.add_argument("--port", type=_port, help="port to listen on (overrides PORT; "
                                                  "default 8080)")
    run = commands.add_parser(
        "run", help="run one job in this process and print its stream",
        description="Run one job here (not through a service), printing its stream as it "
                    "happens. When the job stops for a human decision (interrupt_on) it asks "
                    "on the terminal. Exit 0 completed, 1 failed, cancelled or left "
                    "waiting, 2 invalid input, 130 Ctrl-C.")
    run.add_argument("job", help="a JobExecutionEvent or a structured CloudEvent as JSON "
                                 "(`-` reads standard input)")
    run.add_argument("--json", action="store_true", help="print stream events as JSON lines")
    prune_cmd = commands.add_parser(
        "prune", help="delete checkpoints and ledger rows of jobs finished before a cut-off",
        description="Delete the checkpoints and ledger rows of jobs that finished before "
                    "a cut-off (PostgreSQL only).")
    prune_cmd.add_argument("--older-than", required=True, metavar="AGE",
                           help="e.g. 7d, 12h, 30m")
    prune_cmd.add_argument("--batch-size", type=int, default=500,
                           help="jobs deleted per transaction (default 500)")
    status = _remote(commands, "status", "print a job of a running service",
                     "Print a job as GET /jobs/{JOB_ID} returns it: status, run, attempts, "
                     "and its result, error or pending interrupt.")
    status.add_argument("--json", action="store_true", help="print the job as JSON")
    cancel = _remote(commands, "cancel", "cancel a pending, running or interrupted job",
                     "Cancel a pending, running or interrupted job (POST "
                     "/jobs/{JOB_ID}/cancel); it ends `cancelled`, its checkpoints kept.")
    cancel.add_argument("--reason", help="why (kept with the job and its result)")
    _remote(commands, "retry", "run a failed or cancelled job again",
            "Run a failed or cancelled job again from its last checkpoint (POST "
            "/jobs/{JOB_ID}/retry): finished steps are not repeated.")
    resume = _remote(
        commands, "resume", "answer an interrupted job's pending tool calls",
        "Answer an interrupted job's pending tool calls (POST /jobs/{JOB_ID}/resume): one "
        "decision per pending call, in order. Without a decision option it shows each call "
        "and asks on the terminal.")
    resume.add_argument("--interrupt-id", metavar="ID",
                        help="the pending interrupt (default: the one the job waits on now)")
    decide = resume.add_mutually_exclusive_group()
    decide.add_argument("--approve", action="store_true", help="approve every pending call")
    decide.add_argument("--reject", metavar="MESSAGE",
                        help="reject every pending call; the agent is told MESSAGE")
    decide.add_argument("--edit", metavar="JSON", action="append",
                        help="run the call with these arguments instead (a JSON object); "
                             "repeat once per pending call")
    decide.add_argument("--decisions", metavar="JSON",
                        help='the decisions as a JSON list, e.g. \'[{"type": "approve"}, '
                             '{"type": "reject", "message": "no"}]\'')
    return parser
