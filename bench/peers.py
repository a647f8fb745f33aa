"""`python -m bench.peers`: agent-executor against Aegra, HTTP to HTTP, on the same graph.

Both serve the hello job's graph (`bench/aegra_graph.py` builds it for Aegra with the
project's compiler, as `python -m bench` does for its floor) on the one PostgreSQL
server, each on a database of its own; one client (httpx, a pool of C connections,
C jobs in flight, the next sent when one answers) drives them in turn:

- agent-executor: `serve`, production profile (PostgreSQL, Dragonfly, NATS), one
  `POST /` per job with its CloudEvent, answered with the result event;
- Aegra `runs/wait`: one `POST /threads/{new id}/runs/wait` per job (Aegra makes
  the thread), answered with the final state: its cheapest path;
- Aegra `runs/stream`: the same run streamed with the stream modes the service
  records (messages, updates, tasks; subgraphs), read to the end.

Every answer is checked (the result completed / the last message is the script's
final answer); a measurement with a wrong answer is an error, not a number. Each
measurement has a fresh server process; per repeat, each concurrency runs every side
back to back, the order reversed every other repeat. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from agent_executor.adapters.langgraph.stream import STREAM_MODES
from bench.aegra import (
    PINS,
    VENV,
    AegraDatabase,
    AegraProcess,
    ensure_venv,
    graph_versions,
    version_mismatches,
    write_config,
)
from bench.aegra_graph import GRAPH_ID, SHAPE
from bench.cli import concurrencies, run_main
from bench.jobs import final_answer, job_data, shape_template, structured_event
from bench.peer_report import (
    AEGRA_STREAM,
    AEGRA_WAIT,
    LABELS,
    OURS,
    PeerRun,
    medians,
    ratio_table,
    ratios,
    runs_table,
)
from bench.report import Progress
from bench.servers import (
    Backing,
    backing_servers,
    busy_share,
    machine_busy_seconds,
    sample_process,
    sample_tree,
)
from bench.service import HEADERS, ServeProcess, ServerProcess, closed_loop

Request = Callable[[httpx.AsyncClient, str], Awaitable[str | None]]  # the error, or None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="agent-executor against Aegra over HTTP on the same compiled graph "
                    "(the hello job on the scripted model); needs PyPI the first time.")
    parser.add_argument("--jobs", type=int, default=200,
                        help="measured jobs per side, concurrency and repeat (default 200)")
    parser.add_argument("--concurrency", default="1,8,16",
                        help="comma-separated jobs in flight (default 1,8,16)")
    parser.add_argument("--repeats", type=int, default=3, help="default 3")
    parser.add_argument("--aegra", choices=("wait", "stream", "both"), default="both",
                        help="Aegra's runs/wait, runs/stream or both (default both)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured jobs before each measurement (default 2*C, min 8)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes per server: serve's WORKERS and uvicorn's --workers, "
                             "C/W jobs per process (default 1)")
    parser.add_argument("--output", type=Path, help="write every number as JSON here")
    parser.add_argument("--job-timeout", type=float, default=120.0,
                        help="seconds one job may take before the run is aborted")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds the measurements may take (default: scaled to the work)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs here")
    parser.add_argument("--venv", type=Path, default=VENV,
                        help=f"Aegra's virtual environment (default {VENV})")
    args = parser.parse_args(argv)
    args.concurrencies = concurrencies(parser, args.concurrency)
    if args.jobs < 1 or args.repeats < 1 or args.workers < 1:
        parser.error("--jobs, --repeats and --workers must be >= 1")
    args.sides = [OURS] + {"wait": [AEGRA_WAIT], "stream": [AEGRA_STREAM],
                           "both": [AEGRA_WAIT, AEGRA_STREAM]}[args.aegra]
    return args


def ours_request(template: dict[str, Any], expected: str) -> Request:
    async def send(client: httpx.AsyncClient, job_id: str) -> str | None:
        answer = await client.post("/", content=structured_event(job_data(template, job_id)),
                                   headers=HEADERS)
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:300]}"
        data = answer.json().get("data") or {}
        if data.get("status") != "completed":
            return f"status {data.get('status')!r}: {str(data.get('error'))[:300]}"
        output = (data.get("result") or {}).get("output")
        return None if output == expected else f"output {output!r:.300}"
    return send


def aegra_wait_request(messages: list[dict[str, Any]], expected: str) -> Request:
    async def send(client: httpx.AsyncClient, job_id: str) -> str | None:
        answer = await client.post(f"/threads/{uuid.uuid4()}/runs/wait",
                                   json={"assistant_id": GRAPH_ID,
                                         "input": {"messages": messages}})
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:300]}"
        last = ((answer.json() or {}).get("messages") or [{}])[-1]
        if last.get("type") == "ai" and last.get("content") == expected:
            return None
        return f"last message {last!r:.300}"
    return send


def aegra_stream_request(messages: list[dict[str, Any]], expected: str) -> Request:
    body = {"assistant_id": GRAPH_ID, "input": {"messages": messages},
            "stream_mode": list(STREAM_MODES), "stream_subgraphs": True}

    async def send(client: httpx.AsyncClient, job_id: str) -> str | None:
        async with client.stream("POST", f"/threads/{uuid.uuid4()}/runs/stream",
                                 json=body) as answer:
            events = b"".join([chunk async for chunk in answer.aiter_bytes()])
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {events[:300]!r}"
        if b"event: error" in events:
            return f"an error event: {events[events.index(b'event: error'):][:300]!r}"
        return None if expected.encode() in events else "the final answer never streamed"
    return send


class Peers:
    def __init__(self, args: argparse.Namespace, backing: Backing, workdir: Path,
                 python: Path, database: AegraDatabase) -> None:
        self.args = args
        self.backing = backing
        self.workdir = workdir
        self.python = python
        self.database = database
        self.config = write_config(workdir)
        template = shape_template(SHAPE)
        expected = final_answer(template)
        messages = template["input_payload"]["messages"]
        self.requests: dict[str, Request] = {
            OURS: ours_request(template, expected),
            AEGRA_WAIT: aegra_wait_request(messages, expected),
            AEGRA_STREAM: aegra_stream_request(messages, expected)}
        self.runs: list[dict[str, Any]] = []

    def server(self, side: str, concurrency: int, repeat: int) -> ServerProcess:
        log = self.workdir / f"{side}-c{concurrency}-r{repeat}.log"
        if side == OURS:
            workers = self.args.workers
            env = {**self.backing.service_env(), "WORKERS": str(workers),
                   "MAX_CONCURRENT_JOBS": str(-(-concurrency // workers))}
            return ServeProcess(env, log)
        return AegraProcess(self.python, self.config, self.database, concurrency, log,
                            workers=self.args.workers)

    async def migrate_aegra(self) -> None:
        """Aegra migrates its database as it starts, in every uvicorn worker at once
        (they race: a duplicate-type error); one worker first does it alone."""
        once = AegraProcess(self.python, self.config, self.database, 1,
                            self.workdir / "aegra-migrate.log")
        try:
            await once.start()
        finally:
            await once.stop()

    async def run(self) -> None:
        for repeat in range(self.args.repeats):
            for concurrency in self.args.concurrencies:
                sides = self.args.sides if repeat % 2 == 0 else self.args.sides[::-1]
                for side in sides:
                    measured = await self.one(side, concurrency, repeat)
                    self.runs.append(measured.summary())
            print(f"\nrepeat {repeat + 1} of {self.args.repeats}:")
            print(runs_table([r for r in self.runs if r["repeat"] == repeat]), flush=True)

    async def one(self, side: str, concurrency: int, repeat: int) -> PeerRun:
        server = self.server(side, concurrency, repeat)
        await server.start()
        try:
            return await self.measure(server, side, concurrency, repeat)
        finally:
            await server.stop()
            if self.args.keep_logs is not None:
                self.args.keep_logs.mkdir(parents=True, exist_ok=True)
                (self.args.keep_logs / server.log.name).write_bytes(server.log.read_bytes())

    async def measure(self, server: ServerProcess, side: str, concurrency: int,
                      repeat: int) -> PeerRun:
        request, timeout = self.requests[side], self.args.job_timeout
        prefix = f"{self.backing.job_prefix}{side}-c{concurrency}-r{repeat}-"
        errors: list[str] = []
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)

        async def job(client: httpx.AsyncClient, job_id: str) -> float:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    error = await request(client, job_id)
            except TimeoutError as exc:
                raise RuntimeError(f"{side}: no answer for {job_id} within {timeout:g}s:\n"
                                   f"{server.tail()}") from exc
            except httpx.HTTPError as exc:
                raise RuntimeError(f"{side}: {job_id}: {type(exc).__name__}: {exc}:\n"
                                   f"{server.tail()}") from exc
            if error is not None:
                errors.append(error)
            return (time.perf_counter() - started) * 1000

        def fail_on_errors(what: str) -> None:
            if errors:
                raise RuntimeError(f"{LABELS[side]} C={concurrency}: {len(errors)} {what} "
                                   f"job(s) went wrong; the first: {errors[0]}\n"
                                   f"{server.tail()}")

        async with httpx.AsyncClient(base_url=server.url, limits=limits,
                                     timeout=timeout) as client:
            warmup = self.args.warmup if self.args.warmup is not None else max(8, 2 * concurrency)

            async def warm(index: int) -> None:
                await job(client, f"{prefix}warmup-{index}")

            await closed_loop(warmup, concurrency, warm)
            fail_on_errors("warm-up")
            bar = Progress(f"r{repeat + 1} {side} C={concurrency}", self.args.jobs)

            async def measured(index: int) -> None:
                latencies.append(await job(client, f"{prefix}{index}"))
                bar.advance()

            before, client_before = sample_tree(server.pid), sample_process(os.getpid())
            busy = machine_busy_seconds()
            seconds = await closed_loop(self.args.jobs, concurrency, measured)
            after, client_after = sample_tree(server.pid), sample_process(os.getpid())
            busy_after = machine_busy_seconds()
            bar.close()
        fail_on_errors("measured")
        return PeerRun(side, concurrency, repeat, self.args.jobs, seconds, latencies,
                       cpu_seconds=after.cpu_seconds - before.cpu_seconds,
                       system_seconds=after.system_seconds - before.system_seconds,
                       rss_peak_mb=after.hwm_mb,
                       client_cpu_seconds=client_after.cpu_seconds - client_before.cpu_seconds,
                       machine_busy=busy_share(busy, busy_after))


def _budget(args: argparse.Namespace) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    measurements = args.repeats * len(args.concurrencies) * len(args.sides)
    warmup = args.warmup if args.warmup is not None else 2 * max(args.concurrencies) + 8
    return float(300 + measurements * (120 + (args.jobs + warmup) * 0.5))  # even at 2 jobs/s


async def main_async(args: argparse.Namespace) -> int:
    python = await asyncio.to_thread(ensure_venv, args.venv)
    here, theirs = graph_versions(), await asyncio.to_thread(graph_versions, python)
    mismatches = version_mismatches(here, theirs)
    if mismatches:
        print("peers: WARNING: the graph's packages differ, so the graphs may too: "
              + "; ".join(f"{k} {v}" for k, v in mismatches.items()), file=sys.stderr)
    else:
        print("peers: the graph's packages are the same in both environments: "
              + ", ".join(f"{k} {v}" for k, v in here.items()))
    peers: Peers | None = None
    async with backing_servers("agent-executor-peers-") as (backing, workdir):
        database = AegraDatabase(f"bench_aegra_{backing.tag}", backing.ports)
        await database.create()
        try:
            peers = Peers(args, backing, workdir, python, database)
            async with asyncio.timeout(_budget(args)):
                if args.workers > 1 and (AEGRA_WAIT in args.sides or AEGRA_STREAM in args.sides):
                    await peers.migrate_aegra()
                await peers.run()
        finally:
            await database.drop()
            if peers is not None and peers.runs:
                _print(peers.runs)
                if args.output is not None:
                    report = {"taken": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "cpus": os.cpu_count(), "jobs": args.jobs,
                              "repeats": args.repeats, "aegra_pins": list(PINS),
                              "graph_packages": here, "aegra_graph_packages": theirs,
                              "mismatches": mismatches, "runs": peers.runs,
                              "medians": medians(peers.runs), "ratios": ratios(peers.runs)}
                    args.output.write_text(json.dumps(report, indent=2) + "\n")
                    print(f"\nwrote {args.output}")
    return 0


def _print(runs: list[dict[str, Any]]) -> None:
    repeats = len({r["repeat"] for r in runs})
    print(f"\nmedians over {repeats} repeat(s):")
    print(runs_table(medians(runs)))
    paired = ratios(runs)
    if paired:
        print("\nagent-executor / Aegra, each repeat's pair, median (min-max); "
              "CPU is the server's process tree:")
        print(ratio_table(paired))


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(parse_args(argv)), "peers")


if __name__ == "__main__":
    sys.exit(main())
