"""`python -m tests.reliability.health_probe URL STOP_FILE`: GET URL/health every 25 ms
until STOP_FILE exists, then print the latencies (seconds) and failures as JSON.

A process of its own, so what it measures is the served worker, not the test's own
event loop (busy sending megabytes of hostile bodies)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

INTERVAL_SECONDS = 0.025
MAX_SECONDS = 300  # a probe whose test died stops by itself


def main(url: str, stop_file: Path) -> None:
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + MAX_SECONDS
    with httpx.Client(timeout=10) as client:
        while not stop_file.exists() and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = client.get(f"{url}/health")
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(str(response.status_code))
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            time.sleep(INTERVAL_SECONDS)
    print(json.dumps({"latencies": latencies, "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
