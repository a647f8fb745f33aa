"""The floor: the same compiled graphs, invoked in this process on `AsyncPostgresSaver`
on the run's database, at the same concurrency, with nothing around them: no
ledger, no NATS, no Dragonfly.

Run by `python -m bench` as `python -m bench.floor` (its own process, so its
RSS and CPU are its own); prints one JSON object on stdout.

- `invoke`: `graph.ainvoke(..., durability="sync")`, what the agent itself costs.
- `stream`: `graph.astream` with the service's stream modes (messages, updates,
  tasks; subgraphs), every part drained: the agent plus LangGraph's streaming.

It runs with the process settings `serve` has (LangSmith bookkeeping inline,
installed by `AgentCompiler`; `gc.freeze()` once started), so the floor is the
cheapest way known to run these graphs. Its pool is the one LangGraph's
documentation shows for `AsyncPostgresSaver` (autocommit, `prepare_threshold=0`,
dict rows, no checks), sized like the service's (`pool_sizes`): what the
service's own pool choices cost counts as overhead, not as floor.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.stream import STREAM_MODES
from agent_executor.adapters.langgraph.tools import ToolRegistry
from agent_executor.adapters.postgres.checkpointer import pool_sizes
from bench.jobs import NoModelKeys, shape_template
from bench.profile import recording
from bench.report import Measurement, Progress
from bench.servers import busy_share, machine_busy_seconds, sample_process
from bench.service import closed_loop

MODES = ("invoke", "stream")


async def measure(postgres: PostgresSettings, shape: str, jobs: int, concurrency: int,
                  warmup: int, mode: str, prefix: str, progress: bool,
                  profile: Path | None = None) -> Measurement:
    min_size, max_size = pool_sizes(concurrency)
    pool = AsyncConnectionPool(
        postgres.dsn(), connection_class=AsyncConnection[DictRow], min_size=min_size,
        max_size=max_size, open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(pool)
        registry = ToolRegistry.load()
        template = shape_template(shape)
        compiler = AgentCompiler(saver, ChatModelFactory(NoModelKeys()), registry)
        agent = await compiler.acompile(parse_definition(template["agent_definition"],
                                                         registry.names()))
        graph = agent.graph
        messages = template["input_payload"]["messages"]
        first: dict[str, float] = {}

        async def run(job_id: str) -> None:
            config: RunnableConfig = {"configurable": {"thread_id": job_id}}
            state: dict[str, Any] = {"messages": [dict(m) for m in messages]}
            if mode == "invoke":
                await graph.ainvoke(state, config, durability="sync")
                return
            async for part in graph.astream(state, config, stream_mode=STREAM_MODES,
                                            subgraphs=True, version="v2", durability="sync"):
                if job_id not in first and part["type"] == "messages":
                    first[job_id] = time.perf_counter()

        gc.freeze()  # as `serve` does once started: long-lived objects out of the GC's way

        async def warm(index: int) -> None:
            await run(f"{prefix}warmup-{index}")

        await closed_loop(warmup, concurrency, warm)
        latencies: list[float] = []
        started_at: dict[str, float] = {}
        bar = Progress(f"floor {mode} {shape} C={concurrency}", jobs) if progress else None

        async def run_one(index: int) -> None:
            job_id = f"{prefix}{index}"
            started_at[job_id] = started = time.perf_counter()
            await run(job_id)
            latencies.append((time.perf_counter() - started) * 1000)
            if bar is not None:
                bar.advance()

        before, busy = sample_process(os.getpid()), machine_busy_seconds()
        with recording(os.getpid(), profile):
            seconds = await closed_loop(jobs, concurrency, run_one)
        after, busy_after = sample_process(os.getpid()), machine_busy_seconds()
        if bar is not None:
            bar.close()
        first_ms = [(first[j] - started_at[j]) * 1000 for j in first if j in started_at]
        return Measurement(f"floor-{mode}", shape, concurrency, jobs, seconds, latencies,
                           first_ms, rss_peak_mb=after.hwm_mb, rss_end_mb=after.rss_mb,
                           cpu_seconds=after.cpu_seconds - before.cpu_seconds,
                           system_seconds=after.system_seconds - before.system_seconds,
                           main_thread_seconds=(after.main_thread_seconds
                                                - before.main_thread_seconds),
                           machine_busy=busy_share(busy, busy_after))
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--shape", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="invoke")
    parser.add_argument("--prefix", required=True, help="thread id prefix")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy the measured phase into this file")
    args = parser.parse_args(argv)
    env = os.environ
    postgres = PostgresSettings(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]),
                                database=env["POSTGRES_DB"], user=env["POSTGRES_USER"],
                                password=env.get("POSTGRES_PASSWORD", ""),
                                schema=env.get("POSTGRES_SCHEMA", "public"))
    result = asyncio.run(measure(postgres, args.shape, args.jobs, args.concurrency,
                                 args.warmup, args.mode, args.prefix, not args.no_progress,
                                 args.profile))
    data = result.summary()
    data["latencies_ms"] = result.latencies_ms
    data["first_event_ms"] = result.first_event_ms
    sys.stdout.write(json.dumps(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
