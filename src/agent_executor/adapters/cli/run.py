"""`agent-executor run`: one job in this process, its stream printed as it happens,
a person asked on the terminal when it waits for a decision."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from agent_executor.adapters import config as cfg
from agent_executor.adapters.cli.args import load_job_file
from agent_executor.adapters.cli.printer import StreamPrinter
from agent_executor.adapters.cli.prompt import ask_decisions
from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.domain import events as ev
from agent_executor.domain.errors import AgentExecutorError, InvalidJob
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job
from agent_executor.domain.result import JobResult
from agent_executor.ports.events import EventStream

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

Decide = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
"""Given an interrupted job's pending interrupt (the `on_interrupt` data), the
decisions that resume it, one per request. The seam between `run` and the
terminal: tests and other front ends give their own."""


class Runner(Protocol):
    """What `run` needs of the service: the use case and the event stream."""

    @property
    def execute(self) -> ExecuteJob: ...

    @property
    def events(self) -> EventStream: ...


OpenRunner = Callable[[cfg.Settings], AbstractAsyncContextManager[Runner]]


def ask_on_terminal(prompt: str) -> str:
    """`input`, its prompt on standard error (standard output stays the stream, JSON
    lines with `--json`), with Ctrl-C raising at once: under `asyncio.run` a first
    SIGINT only cancels the main task, which a blocking `input` would never see."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return input()
    finally:
        signal.signal(signal.SIGINT, previous)


def say_on_terminal(line: str) -> None:
    print(line, file=sys.stderr)


def decide_on_terminal(interrupt: Mapping[str, Any]) -> list[dict[str, Any]]:
    return ask_decisions(interrupt, ask_on_terminal, say_on_terminal)


async def run_job(settings: cfg.Settings, open_service: OpenRunner, path: str, *,
                  as_json: bool, decide: Decide | None = None) -> int:
    """Run one job in this process, printing its stream events as they happen. When it
    stops for a human decision, `decide` gives the decisions and it runs on; without
    `decide` (no terminal) it is left waiting."""
    try:
        job = load_job_file(path, EventNames(settings.cloudevent_source,
                                             settings.cloudevent_type_prefix))
    except OSError as exc:
        print(f"agent-executor run: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidJob as exc:
        extra = [d for d in exc.details if d not in exc.message]
        print("agent-executor run: " + "; ".join([exc.message, *extra]), file=sys.stderr)
        return EXIT_INVALID
    printer = StreamPrinter(as_json=as_json)
    async with open_service(settings) as service:
        try:
            result = await _run_until_it_stops(service, job, printer)
            while result.status == "interrupted" and decide is not None:
                assert result.interrupt is not None
                try:
                    decisions = decide(result.interrupt)
                except EOFError:  # Ctrl-D at the prompt: nobody answers
                    print(file=sys.stderr)
                    break
                await service.execute.resume(job.job_id, result.interrupt["interrupt_id"],
                                             decisions)
                result = await _run_until_it_stops(service, job, printer)
        except AgentExecutorError as exc:
            print(f"agent-executor run: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except asyncio.CancelledError:  # Ctrl-C
            await _stop_the_rest()
            raise
    if result.status == "interrupted":
        print(f"agent-executor run: job {job.job_id} waits for a decision; run it again on "
              "a terminal to answer", file=sys.stderr)
    return EXIT_OK if result.status == "completed" else EXIT_FAILED


async def _run_until_it_stops(service: Runner, job: Job, printer: StreamPrinter
                              ) -> JobResult:
    """Claim and run the job until it finishes or waits for a decision, printing its
    stream; a job that already has (finished or paused) gets its recorded outcome."""
    execute, events = service.execute, service.events
    record = await execute.claim(job, "cli")
    if record.settled is not None:
        result = record.settled
        if result.status == "interrupted":
            print(f"job {job.job_id} is waiting for a decision", file=sys.stderr)
        else:
            print(f"job {job.job_id} already {record.status}; its recorded result:",
                  file=sys.stderr)
            printer.summary({"status": result.status, **result.to_data()}, timed=False)
        return result
    follower = asyncio.create_task(_print_stream(events, job.job_id, record.run, printer))
    result = await execute.run_claimed(job, record)
    await asyncio.wait({follower}, timeout=10)  # its last events; a lost stream is no error
    follower.cancel()
    if result.status != "interrupted" and not printer.as_json:
        # From the result rather than the stream's `end`: it also has the usage.
        printer.summary({"status": result.status, **result.to_data()})
    return result


async def _stop_the_rest() -> None:
    """Stops every other task of this process (the stream's follower, the agent's run)
    before the stores close under them: a cancelled caller does not always cancel what
    it awaited, and a task left running would fail loudly on a closed store."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=10)
    for task in others:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the process is stopping, nothing to report


async def _print_stream(events: EventStream, job_id: str, run: int,
                        printer: StreamPrinter) -> None:
    """Prints the job's events after the last one printed, until the run's `end` or
    its pause for a decision. As text the `end` is left to the summary."""
    async for event in events.follow(job_id, printer.last_seq, live=True, until_run=run):
        if event.event_type == ev.END and not printer.as_json:
            printer.last_seq = event.seq
            return
        printer(event)
        if event.event_type == ev.INTERRUPT:
            return
