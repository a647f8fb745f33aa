"""`python -m bench`: see bench/__init__.py and docs/performance.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tests.otlp_receiver import OtlpReceiver

from bench.cli import concurrencies, run_main
from bench.floor import MODES
from bench.jobs import ROOT, shape_template, shapes
from bench.profile import py_spy, recording
from bench.report import Measurement, table
from bench.servers import Backing, backing_servers, sample_tree
from bench.service import NatsDriver, ServeProcess

logger = logging.getLogger("bench")
SOAK_JOBS = 10_000
SOAK_EVERY = 1_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="agent-executor end to end through NATS (PostgreSQL, Dragonfly) "
                    "against the floor: the same graphs in-process on AsyncPostgresSaver.")
    parser.add_argument("--jobs", type=int, default=None,
                        help="measured jobs per shape and concurrency (default 200; "
                             f"{SOAK_JOBS} with --soak)")
    parser.add_argument("--concurrency", default="1,16",
                        help="comma-separated MAX_CONCURRENT_JOBS values (default 1,16; "
                             "--soak uses the last)")
    parser.add_argument("--workers", default="1",
                        help="comma-separated WORKERS values (default 1): the service runs "
                             "each with MAX_CONCURRENT_JOBS = concurrency / workers per "
                             "worker (rounded up), so the pod holds C jobs either way")
    parser.add_argument("--shape", choices=("single", "team", "both"), default="both")
    parser.add_argument("--floor", choices=(*MODES, "both", "none"), default="invoke",
                        help="floor to compare with (default invoke)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured jobs before each measurement (default 2*C, min 8)")
    parser.add_argument("--soak", action="store_true",
                        help=f"service only, one shape, {SOAK_JOBS} jobs; RSS every "
                             f"{SOAK_EVERY}")
    parser.add_argument("--output", type=Path, help="write every number as JSON here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each service measurement with py-spy into DIR")
    parser.add_argument("--job-timeout", type=float, default=120.0,
                        help="seconds one job may take before the run is aborted")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds the whole run may take (default: scaled to the work)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="copy the serve logs here")
    parser.add_argument("--service-src", type=Path, metavar="DIR",
                        help="run `serve` from this src/ (e.g. an older checkout's) to "
                             "compare it with the same floor")
    parser.add_argument("--tracing", action="store_true",
                        help="export the service's traces over OTLP/HTTP to a receiver in "
                             "the bench process (docs/observability.md)")
    args = parser.parse_args(argv)
    args.concurrencies = concurrencies(parser, args.concurrency)
    args.worker_counts = concurrencies(parser, args.workers, option="--workers")
    if args.jobs is None:
        args.jobs = SOAK_JOBS if args.soak else 200
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if args.soak:
        args.concurrencies = args.concurrencies[-1:]
        args.shape = "team" if args.shape == "team" else "single"
    if args.profile is not None and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    return args


def _warmup(args: argparse.Namespace, concurrency: int) -> int:
    return args.warmup if args.warmup is not None else max(8, 2 * concurrency)


def _budget(args: argparse.Namespace) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    runs: int = (len(args.concurrencies) * len(shapes(args.shape))
                 * (len(args.worker_counts) + (0 if args.soak else 2)))
    jobs: int = args.jobs
    return 300.0 + runs * (jobs + 40) * 0.5  # generous: 2 jobs/s would still finish


class Bench:
    def __init__(self, args: argparse.Namespace, backing: Backing, workdir: Path) -> None:
        self.args = args
        self.backing = backing
        self.workdir = workdir
        self.rows: list[dict[str, Any]] = []
        self.soak: list[dict[str, float]] = []
        self.otlp_endpoint: str | None = None  # --tracing: the in-process receiver's

    async def run(self) -> None:
        for concurrency in self.args.concurrencies:
            floors: dict[tuple[str, str], dict[str, Any]] = {}  # one per shape, any workers
            for workers in self.args.worker_counts:
                services = await self.service(concurrency, workers)
                for shape in shapes(self.args.shape):
                    row: dict[str, Any] = {"shape": shape, "concurrency": concurrency,
                                           "workers": workers,
                                           "service": services[shape].summary()}
                    for mode in self._floor_modes():
                        if (shape, mode) not in floors:
                            floors[shape, mode] = (
                                await self.floor(shape, concurrency, mode)).summary()
                        row.setdefault("floor", floors[shape, mode])
                        row[f"floor_{mode}"] = floors[shape, mode]
                    self.rows.append(row)

    def _floor_modes(self) -> list[str]:
        if self.args.soak or self.args.floor == "none":
            return []
        return list(MODES) if self.args.floor == "both" else [self.args.floor]

    async def service(self, concurrency: int, workers: int) -> dict[str, Measurement]:
        per_worker = -(-concurrency // workers)  # the pod holds C jobs, whatever W
        env = {**self.backing.service_env(), "MAX_CONCURRENT_JOBS": str(per_worker),
               "WORKERS": str(workers)}
        if self.otlp_endpoint is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if self.args.service_src is not None:
            path = [str(self.args.service_src.resolve()), os.environ.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        run = f"c{concurrency}" + (f"-w{workers}" if workers > 1 else "")
        serve = ServeProcess(env, self.workdir / f"serve-{run}.log")
        driver = NatsDriver(self.backing, self.args.job_timeout)
        results: dict[str, Measurement] = {}
        await serve.start()
        try:
            await driver.start()
            for shape in shapes(self.args.shape):
                template = shape_template(shape)
                prefix = f"{self.backing.job_prefix}svc-{shape}-{run}-"
                at = f"C={concurrency}" + (f" W={workers}" if workers > 1 else "")
                warm = [f"{prefix}warmup-{i}" for i in range(_warmup(self.args, concurrency))]
                await driver.measure(f"warm-up {shape} {at}", shape, template, warm,
                                     concurrency, serve.pid)
                ids = [f"{prefix}{i}" for i in range(self.args.jobs)]
                label = f"service {shape} {at}"
                with recording(serve.pid, self._profile_file(f"serve-{shape}-{run}")):
                    results[shape] = await driver.measure(
                        label, shape, template, ids, concurrency, serve.pid,
                        every=self._soak_sampler(serve.pid) if self.args.soak else None)
                if results[shape].failed:
                    raise RuntimeError(f"{results[shape].failed} job(s) failed; see "
                                       f"{serve.log}:\n{serve.tail()}")
        finally:
            await driver.close()
            code = await serve.stop()
            if self.args.keep_logs is not None:
                self.args.keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(serve.log, self.args.keep_logs / serve.log.name)
            if code not in (0, None):
                logger.warning("serve exited %s", code)
        return results

    def _soak_sampler(self, pid: int) -> Any:
        started = time.perf_counter()
        last = {"jobs": 0, "at": started, "cpu": sample_tree(pid).cpu_seconds}

        def every(done: int) -> None:
            if done % SOAK_EVERY:
                return
            sample = sample_tree(pid)
            now = time.perf_counter()
            elapsed = now - started
            window = done - last["jobs"]
            # Per window, not cumulative: a service that slows down shows it here, and
            # CPU per job tells whether it spends more or waits more.
            window_rate = window / (now - last["at"])
            window_cpu_ms = (sample.cpu_seconds - last["cpu"]) / window * 1000
            last.update(jobs=done, at=now, cpu=sample.cpu_seconds)
            self.soak.append({"jobs": done, "rss_mb": round(sample.rss_mb, 1),
                              "hwm_mb": round(sample.hwm_mb, 1),
                              "seconds": round(elapsed, 1),
                              "window_jobs_per_s": round(window_rate, 1),
                              "window_cpu_ms_per_job": round(window_cpu_ms, 1)})
            sys.stderr.write("\n" if sys.stderr.isatty() else "")
            print(f"soak: {done:>6} jobs  RSS {sample.rss_mb:7.1f} MB  peak "
                  f"{sample.hwm_mb:7.1f} MB  {elapsed:7.1f} s  last {window}: "
                  f"{window_rate:6.1f} jobs/s, {window_cpu_ms:5.1f} ms CPU/job", flush=True)
        return every

    def _profile_file(self, name: str) -> Path | None:
        folder: Path | None = self.args.profile
        return None if folder is None else folder / f"{name}.speedscope.json"

    async def floor(self, shape: str, concurrency: int, mode: str) -> Measurement:
        env = {**os.environ, **self.backing.service_env()}
        prefix = f"{self.backing.job_prefix}floor-{mode}-{shape}-c{concurrency}-"
        command = [sys.executable, "-m", "bench.floor", "--shape", shape, "--jobs",
                   str(self.args.jobs), "--concurrency", str(concurrency), "--warmup",
                   str(_warmup(self.args, concurrency)), "--mode", mode, "--prefix", prefix]
        profile = self._profile_file(f"floor-{mode}-{shape}-c{concurrency}")
        if profile is not None:
            command += ["--profile", str(profile)]
        proc = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(),
                                            60 + self.args.jobs * self.args.job_timeout)
        except BaseException:  # a timeout, or the run's budget cancelling it
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"the floor ({mode} {shape} C={concurrency}) failed")
        data = json.loads(out.decode().strip().splitlines()[-1])
        return Measurement(data["path"], shape, concurrency, data["jobs"], data["seconds"],
                           data["latencies_ms"], data["first_event_ms"],
                           rss_peak_mb=data["rss_peak_mb"], rss_end_mb=data["rss_end_mb"],
                           cpu_seconds=data["cpu_seconds"],
                           system_seconds=data["system_seconds"],
                           main_thread_seconds=data["main_thread_seconds"],
                           machine_busy=data["machine_busy"])

    def report(self) -> dict[str, Any]:
        return {"jobs": self.args.jobs, "concurrency": self.args.concurrencies,
                "workers": self.args.worker_counts,
                "shape": self.args.shape, "soak": self.soak, "rows": self.rows,
                "cpus": os.cpu_count(), "python": sys.version.split()[0],
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _cpu(data: dict[str, Any]) -> str:
    jobs = data["jobs"]
    text = (f"{data['cpu_seconds'] / jobs * 1000:.1f} ms "
            f"({data['system_seconds'] / jobs * 1000:.1f} sys, "
            f"{data['main_thread_seconds'] / jobs * 1000:.1f} main thread")
    if data.get("client_cpu_seconds") is not None:
        text += f"; bench client {data['client_cpu_seconds'] / jobs * 1000:.1f} ms"
    return text + f"; machine {100 * data['machine_busy']:.0f}% busy)"


def _print(bench: Bench) -> None:
    if bench.rows:
        print()
        print(table(bench.rows))
        print("\nCPU per job (user+system; of which system, of which the main thread):")
        for row in bench.rows:
            at = f"C={row['concurrency']}" + (f" W={row['workers']}" if row["workers"] > 1
                                              else "")
            line = f"  {row['shape']} {at}: service {_cpu(row['service'])}"
            for mode in MODES:
                floor = row.get(f"floor_{mode}")
                if floor:
                    line += f", floor {mode} {_cpu(floor)}"
            print(line)
    if bench.soak:
        first, last = bench.soak[0], bench.soak[-1]
        print(f"\nsoak: RSS {first['rss_mb']} MB after {first['jobs']} jobs (warm), "
              f"{last['rss_mb']} MB after {last['jobs']} ({last['seconds']} s)")
        if last["jobs"] > first["jobs"]:
            slope = (last["rss_mb"] - first["rss_mb"]) / (last["jobs"] - first["jobs"]) * 1000
            print(f"soak: {slope:+.2f} MB per 1,000 jobs after warm-up")


async def main_async(args: argparse.Namespace) -> int:
    async with backing_servers("agent-executor-bench-") as (backing, workdir):
        bench = Bench(args, backing, workdir)
        receiver = OtlpReceiver() if args.tracing else None
        try:
            if receiver is not None:
                bench.otlp_endpoint = receiver.__enter__().endpoint
            async with asyncio.timeout(_budget(args)):
                await bench.run()
        finally:
            if receiver is not None:
                receiver.__exit__(None, None, None)
                print(f"tracing: the receiver got {len(receiver.spans)} spans")
            _print(bench)
            if args.output is not None:
                args.output.write_text(json.dumps(bench.report(), indent=2) + "\n")
                print(f"\nwrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(main_async(parse_args(argv)), "bench")


if __name__ == "__main__":
    sys.exit(main())
