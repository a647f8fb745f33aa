"""`python -m bench.slow_clients`: slow-loris clients against a served process.

Starts `agent-executor serve` (embedded profile) on a free port, opens `--clients`
connections that send 1 byte a second (half trickle the request head, half a
request body after a complete head), and meanwhile asks `/health` every 50 ms.
Prints one JSON object: when the server closed the slow connections, what they
were answered, and `/health` latency while they were open. Bounded by
`--seconds` (default: the timeouts plus 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DROP = ("POSTGRES_", "DRAGONFLY_", "NATS_", "AGENT_EXECUTOR_", "OPENAI_", "ANTHROPIC_")
HEAD = b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def slow_client(port: int, kind: str, until: float) -> dict[str, Any]:
    """Sends one byte a second until the server closes the connection (or `until`)."""
    opened = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return {"kind": kind, "closed_after": None, "status": f"connect: {exc}"}
    payload = HEAD if kind == "head" else b"x" * 10_000
    if kind == "body":
        writer.write(b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     b"ce-specversion: 1.0\r\nContent-Length: 10000\r\n\r\n")
    answer = b""
    closed_after: float | None = None
    for byte in payload:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
            chunk = await asyncio.wait_for(reader.read(4096), 1.0)
        except TimeoutError:
            chunk = None  # nothing yet: send the next byte
        except OSError:
            chunk = b""
        if chunk == b"":
            closed_after = time.monotonic() - opened
            break
        if chunk:
            answer += chunk
        if time.monotonic() > until:
            break
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "none"
    return {"kind": kind, "closed_after": closed_after, "status": status}


async def health_sampler(port: int, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if b" 200 " in answer.split(b"\r\n", 1)[0]:
                latencies.append(time.perf_counter() - started)
            else:
                latencies.append(float("inf"))
        except (OSError, TimeoutError):
            latencies.append(float("inf"))
        await asyncio.sleep(0.05)
    return latencies


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def measure(clients: int, idle: float, body: float, seconds: float) -> dict[str, Any]:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="slow-clients-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP)}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "AGENT_EXECUTOR_DATA_DIR": str(data),
                "LOG_LEVEL": "WARNING", "HTTP_IDLE_TIMEOUT_SECONDS": str(idle),
                "HTTP_BODY_TIMEOUT_SECONDS": str(body)})
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "agent_executor", "serve"], env=env,
                            stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("serve did not start") from None
                await asyncio.sleep(0.1)
        idle_rss = rss_kib(proc.pid)
        stop = asyncio.Event()
        sampler = asyncio.create_task(health_sampler(port, stop))
        await asyncio.sleep(1)
        until = time.monotonic() + seconds
        kinds = ["head" if i % 2 == 0 else "body" for i in range(clients)]
        tasks = [asyncio.create_task(slow_client(port, kind, until)) for kind in kinds]
        await asyncio.sleep(min(idle, body) / 2)
        peak_rss = rss_kib(proc.pid)
        results = await asyncio.gather(*tasks)
        stop.set()
        latencies = await sampler
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    finite = sorted(x for x in latencies if x != float("inf"))
    failures = len(latencies) - len(finite)

    def summary(kind: str) -> dict[str, Any]:
        mine = [r for r in results if r["kind"] == kind]
        closed = [r["closed_after"] for r in mine if r["closed_after"] is not None]
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        return {"clients": len(mine), "closed_by_server": len(closed),
                "closed_after_max_s": round(max(closed), 2) if closed else None,
                "closed_after_median_s": round(statistics.median(closed), 2) if closed else None,
                "answers": statuses}

    def pct(p: float) -> float | None:
        if not finite:
            return None
        return round(finite[min(len(finite) - 1, int(p * len(finite)))] * 1000, 2)

    return {"clients": clients, "idle_timeout_s": idle, "body_timeout_s": body,
            "head_trickle": summary("head"), "body_trickle": summary("body"),
            "health": {"samples": len(latencies), "failed": failures, "p50_ms": pct(0.5),
                       "p99_ms": pct(0.99), "max_ms": pct(1.0)},
            "rss_kib": {"idle": idle_rss, "with_slow_clients": peak_rss}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--body-timeout", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    seconds = args.seconds or max(args.idle_timeout, args.body_timeout) + 10
    report = asyncio.run(measure(args.clients, args.idle_timeout, args.body_timeout, seconds))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
