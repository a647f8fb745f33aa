"""The numbers of `python -m bench.peers`: one measurement, medians over repeats, the
ratios agent-executor / Aegra (paired: each repeat's own, then their median), tables."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.report import aligned, fmt, percentile

OURS = "agent-executor"
AEGRA_WAIT = "aegra-wait"
AEGRA_STREAM = "aegra-stream"
LABELS = {OURS: "agent-executor POST /", AEGRA_WAIT: "Aegra runs/wait",
          AEGRA_STREAM: "Aegra runs/stream"}
MEDIAN_OF = ("jobs_per_second", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
             "cpu_ms_per_job", "rss_peak_mb", "machine_busy")


@dataclass
class PeerRun:
    """One side at one concurrency in one repeat: N jobs over HTTP, C in flight."""

    side: str
    concurrency: int
    repeat: int
    jobs: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    cpu_seconds: float  # the server's process tree, user + system
    system_seconds: float
    rss_peak_mb: float  # VmHWM, summed over the tree
    client_cpu_seconds: float
    machine_busy: float  # share of all cores busy during the measurement

    def summary(self) -> dict[str, Any]:
        per_job = 1000 / self.jobs
        return {"side": self.side, "concurrency": self.concurrency, "repeat": self.repeat,
                "jobs": self.jobs, "seconds": round(self.seconds, 3),
                "jobs_per_second": round(self.jobs / self.seconds, 2),
                **{f"latency_p{q}_ms": round(percentile(self.latencies_ms, q), 2)
                   for q in (50, 95, 99)},
                "cpu_ms_per_job": round(self.cpu_seconds * per_job, 2),
                "system_ms_per_job": round(self.system_seconds * per_job, 2),
                "client_cpu_ms_per_job": round(self.client_cpu_seconds * per_job, 2),
                "rss_peak_mb": round(self.rss_peak_mb, 1),
                "machine_busy": self.machine_busy}


def _key(run: Mapping[str, Any]) -> tuple[int, str]:
    return int(run["concurrency"]), str(run["side"])


def medians(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (concurrency, side), in the order first measured: the median of each number."""
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_key(run), []).append(run)
    return [{"concurrency": c, "side": side, "repeats": len(group),
             **{name: round(statistics.median(float(r[name]) for r in group), 3)
                for name in MEDIAN_OF}}
            for (c, side), group in groups.items()]


def ratios(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """agent-executor over each Aegra side, per concurrency: jobs/s and CPU per job, each
    repeat's ratio (the two ran back to back) and their median, min and max."""
    by: dict[tuple[int, str, int], Mapping[str, Any]] = {
        (*_key(run), int(run["repeat"])): run for run in runs}
    out: list[dict[str, Any]] = []
    for (c, side, repeat), peer in by.items():
        if side == OURS or (c, OURS, repeat) not in by:
            continue
        entry = next((e for e in out if e["concurrency"] == c and e["peer"] == side), None)
        if entry is None:
            entry = {"concurrency": c, "peer": side, "jobs_per_second": [], "cpu_per_job": []}
            out.append(entry)
        ours = by[(c, OURS, repeat)]
        entry["jobs_per_second"].append(ours["jobs_per_second"] / peer["jobs_per_second"])
        entry["cpu_per_job"].append(ours["cpu_ms_per_job"] / peer["cpu_ms_per_job"])
    for entry in out:
        for name in ("jobs_per_second", "cpu_per_job"):
            values = entry.pop(name)
            entry[name] = {"median": round(statistics.median(values), 3),
                           "min": round(min(values), 3), "max": round(max(values), 3),
                           "repeats": len(values)}
    return sorted(out, key=lambda e: (e["concurrency"], e["peer"]))


def runs_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (concurrency, side): single runs or their medians alike."""
    lines: list[Sequence[str]] = [("C", "server", "jobs/s", "p50 ms", "p95 ms", "p99 ms",
                                   "CPU ms/job", "peak RSS MB", "machine busy")]
    for row in sorted(rows, key=_key):
        lines.append((str(row["concurrency"]), LABELS.get(row["side"], row["side"]),
                      fmt(row["jobs_per_second"]), fmt(row["latency_p50_ms"]),
                      fmt(row["latency_p95_ms"]), fmt(row["latency_p99_ms"]),
                      fmt(row["cpu_ms_per_job"]), fmt(row["rss_peak_mb"], 0),
                      f"{100 * float(row['machine_busy']):.0f}%"))
    return aligned(lines)


def ratio_table(entries: Sequence[Mapping[str, Any]]) -> str:
    def cell(value: Mapping[str, Any]) -> str:
        if value["repeats"] == 1:
            return f"{value['median']:.2f}"
        return f"{value['median']:.2f} ({value['min']:.2f}-{value['max']:.2f})"

    lines: list[Sequence[str]] = [("C", "agent-executor against", "jobs/s ratio",
                                   "CPU/job ratio")]
    for entry in entries:
        lines.append((str(entry["concurrency"]), LABELS.get(entry["peer"], entry["peer"]),
                      cell(entry["jobs_per_second"]), cell(entry["cpu_per_job"])))
    return aligned(lines)
