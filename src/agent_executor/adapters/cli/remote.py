"""`status`, `cancel`, `resume` and `retry`: steering a job of a running service by URL.

Exit codes: 0 done; 1 the service failed or answered something unexpected; 2 the
request was refused as invalid (400, 422) or the options are; 3 unauthorised (401,
403: `--token` / `AGENT_EXECUTOR_TOKEN`); 4 no such job (404); 5 the job is not in a
state that allows it (409); 6 the service cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from agent_executor.adapters.cli.client import ServiceClient, ServiceError, ServiceUnreachable
from agent_executor.adapters.cli.prompt import Ask, ask_decisions

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
EXIT_UNAUTHORIZED, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNREACHABLE = 3, 4, 5, 6
STATUS_EXITS = {400: EXIT_INVALID, 422: EXIT_INVALID, 401: EXIT_UNAUTHORIZED,
                403: EXIT_UNAUTHORIZED, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT}
COMMANDS = frozenset({"status", "cancel", "resume", "retry"})


class UsageError(Exception):
    """The options cannot make a request (exit 2)."""


def steer(args: argparse.Namespace, *, client: ServiceClient | None = None,
          ask: Ask = input, interactive: bool | None = None,
          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Runs one steering command; prints the outcome on `out` (or the error on `err`)
    and returns the exit code. `ask` and `interactive` are the terminal `resume` asks
    on; its questions go to `err`."""
    service = client or ServiceClient(args.url, args.token)
    command: Callable[[], str] = {
        "status": lambda: _status(service, args),
        "cancel": lambda: _summary("cancel asked for", service.cancel(args.job_id,
                                                                      args.reason)),
        "retry": lambda: _summary("retried", service.retry(args.job_id)),
        "resume": lambda: _resume(service, args, ask, err, sys.stdin.isatty()
                                  if interactive is None else interactive),
    }[args.command]
    prog = f"agent-executor {args.command}"
    try:
        print(command(), file=out)
    except ServiceError as exc:
        print(f"{prog}: {exc.message}", file=err)
        for detail in exc.details:
            if detail not in exc.message:
                print(f"  {detail}", file=err)
        if exc.status == 401:
            print("  (give the service's token with --token or AGENT_EXECUTOR_TOKEN)",
                  file=err)
        return STATUS_EXITS.get(exc.status, EXIT_FAILED)
    except ServiceUnreachable as exc:
        print(f"{prog}: {exc}", file=err)
        return EXIT_UNREACHABLE
    except UsageError as exc:
        print(f"{prog}: {exc}", file=err)
        return EXIT_INVALID
    except EOFError:
        print(f"\n{prog}: no answer; the job still waits", file=err)
        return EXIT_FAILED
    return EXIT_OK


def _status(service: ServiceClient, args: argparse.Namespace) -> str:
    job = service.job(args.job_id)
    return json.dumps(job, indent=2, ensure_ascii=False) if args.json else describe_job(job)


def _summary(what: str, job: Mapping[str, Any]) -> str:
    return f"{what}: job {job.get('job_id')} is {job.get('status')} (run {job.get('run')})"


def _resume(service: ServiceClient, args: argparse.Namespace, ask: Ask, dialogue: TextIO,
            interactive: bool) -> str:
    if args.interrupt_id and (args.decisions is not None or args.edit is not None):
        decisions = (_json(args.decisions, "--decisions", list) if args.decisions is not None
                     else _edits(args.edit))
        return _summary("resumed", service.resume(args.job_id, args.interrupt_id, decisions))
    job = service.job(args.job_id)  # the pending interrupt: its id and its requests
    interrupt = job.get("interrupt")
    if not isinstance(interrupt, Mapping):
        raise ServiceError(409, f"job {args.job_id} is {job.get('status')}, not "
                                "interrupted: there is nothing to resume")
    # A stale --interrupt-id is the service's to refuse (409), as for any resume.
    interrupt_id = args.interrupt_id or str(interrupt.get("interrupt_id"))
    pending = len(interrupt.get("requests") or [])
    if args.decisions is not None:
        decisions = _json(args.decisions, "--decisions", list)
    elif args.edit is not None:
        decisions = _edits(args.edit)
    elif args.reject is not None:
        decisions = [{"type": "reject", "message": args.reject}] * pending
    elif args.approve:
        decisions = [{"type": "approve"}] * pending
    elif interactive:
        decisions = ask_decisions(interrupt, ask, lambda line: print(line, file=dialogue))
    else:
        raise UsageError("give --approve, --reject MESSAGE, --edit JSON or --decisions JSON "
                         "(standard input is not a terminal to ask on)")
    return _summary("resumed", service.resume(args.job_id, interrupt_id, decisions))


def _edits(raw: list[str]) -> list[dict[str, Any]]:
    return [{"type": "edit", "input": _json(item, "--edit", dict)} for item in raw]


def _json(raw: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{option}: expected a JSON {'list' if kind is list else 'object'}")
    return value


def describe_job(job: Mapping[str, Any]) -> str:
    """A few lines a person reads at a glance: status, run, the outcome or what the job
    waits on, and how to answer it."""
    lines = [f"job {job.get('job_id')}: {job.get('status')} (run {job.get('run')}, "
             f"attempts {job.get('attempts')}, from {job.get('source')})",
             f"  created {job.get('created_at')}, updated {job.get('updated_at')}"
             + (f", finished {job['finished_at']}" if job.get("finished_at") else "")]
    result, error = job.get("result"), job.get("error")
    if isinstance(result, Mapping):
        lines.append(f"  output: {result.get('output', '')}")
        files = sorted(result.get("files") or {})
        if files:
            lines.append(f"  files: {', '.join(files)}")
    if isinstance(error, Mapping):
        retry = " (retryable: `agent-executor retry`)" if error.get("retryable") else ""
        lines.append(f"  error: {error.get('type')}: {error.get('message')}{retry}")
    if job.get("reason"):
        lines.append(f"  reason: {job['reason']}")
    interrupt = job.get("interrupt")
    if isinstance(interrupt, Mapping):
        lines.append(f"  waiting on interrupt {interrupt.get('interrupt_id')}:")
        for i, request in enumerate(interrupt.get("requests") or [], 1):
            lines.append(f"    [{i}] {request.get('tool')} "
                         f"{json.dumps(request.get('input'), ensure_ascii=False)} "
                         f"(allowed: {', '.join(request.get('allowed_decisions') or [])})")
        lines.append(f"  answer with: agent-executor resume {job.get('job_id')} "
                     "[--approve | --reject MESSAGE | --edit JSON]")
    return "\n".join(lines)
