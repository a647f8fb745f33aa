"""Latency statistics, the progress bar and the results table."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Measurement:
    """One shape at one concurrency, on one path (`service` or a floor)."""

    path: str
    shape: str
    concurrency: int
    jobs: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    first_event_ms: list[float] = field(repr=False)
    failed: int = 0
    rss_peak_mb: float | None = None
    rss_end_mb: float | None = None
    cpu_seconds: float | None = None
    system_seconds: float | None = None
    main_thread_seconds: float | None = None
    client_cpu_seconds: float | None = None
    machine_busy: float | None = None  # share of all cores busy during the measurement

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items()
                if k not in ("latencies_ms", "first_event_ms")}
        data["jobs_per_second"] = round(self.jobs_per_second, 2)
        for q in (50, 95, 99):
            data[f"latency_p{q}_ms"] = round(percentile(self.latencies_ms, q), 2)
        data["first_event_p50_ms"] = round(percentile(self.first_event_ms, 50), 2)
        data["first_event_p99_ms"] = round(percentile(self.first_event_ms, 99), 2)
        return data


class Progress:
    """A one-line bar on stderr: redrawn in place on a terminal, a line per quarter
    otherwise (logs stay readable)."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._drawn_at = 0.0
        self._quarter = 0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if self.tty:
            if now - self._drawn_at >= 0.1 or self.done >= self.total:
                self._drawn_at = now
                self._draw(now, end="")
        elif self.done * 4 // self.total > self._quarter:
            self._quarter = self.done * 4 // self.total
            self._draw(now, end="\n")

    def close(self) -> None:
        if self.tty:
            self._draw(time.perf_counter(), end="\n")

    def _draw(self, now: float, end: str) -> None:
        width = 30
        filled = min(width, width * self.done // self.total)
        rate = self.done / max(1e-9, now - self.started)
        line = (f"{self.label:<28} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done:>6}/{self.total:<6} {rate:7.1f} jobs/s")
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{line}{end}")
        self.stream.flush()


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (shape, concurrency, workers): service against the floor (the
    first floor measured; with both, also the throughput ratio against the streaming
    floor)."""
    streamed = any(row.get("floor_stream") and row.get("floor_invoke") for row in rows)
    workers = any(row.get("workers", 1) > 1 for row in rows)
    header = ["shape", "C", *(["W"] if workers else []), "svc jobs/s", "floor jobs/s", "ratio"]
    header += ["ratio vs stream"] if streamed else []
    header += ["svc p50", "svc p95", "svc p99", "floor p99", "+p99 ms", "1st event p50",
               "svc RSS peak MB", "floor RSS MB"]
    lines: list[Sequence[str]] = [tuple(header)]
    for row in rows:
        svc, floor = row["service"], row.get("floor")
        cells = [row["shape"], str(row["concurrency"]),
                 *([str(row.get("workers", 1))] if workers else []), fmt(svc["jobs_per_second"]),
                 fmt(floor["jobs_per_second"] if floor else None),
                 fmt(_ratio(svc, floor), 2)]
        if streamed:
            cells.append(fmt(_ratio(svc, row.get("floor_stream")), 2))
        cells += [fmt(svc["latency_p50_ms"]), fmt(svc["latency_p95_ms"]),
                  fmt(svc["latency_p99_ms"]),
                  fmt(floor["latency_p99_ms"] if floor else None),
                  fmt(svc["latency_p99_ms"] - floor["latency_p99_ms"] if floor else None),
                  fmt(svc["first_event_p50_ms"]), fmt(svc["rss_peak_mb"], 0),
                  fmt(floor["rss_peak_mb"] if floor else None, 0)]
        lines.append(tuple(cells))
    return aligned(lines)


def aligned(lines: Sequence[Sequence[str]]) -> str:
    """A header line and rows as right-aligned columns, a rule under the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _ratio(service: Mapping[str, Any], floor: Mapping[str, Any] | None) -> float | None:
    if not floor or not floor["jobs_per_second"]:
        return None
    return float(service["jobs_per_second"]) / float(floor["jobs_per_second"])
