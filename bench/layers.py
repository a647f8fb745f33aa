"""`python -m bench.layers`: what each layer of the service adds to a job's CPU, in one
process, so that the machine's noise cancels out.

The same compiled graph, run at the same concurrency, one layer added at a time:

- `invoke`: `graph.ainvoke(..., durability="sync")` (the floor);
- `stream`: `graph.astream` with the stream modes the runtime uses, parts drained;
- `runtime`: `LangGraphAgentRuntime.run` (definition, thread check, translation)
  with a sink that drops events;
- `encode`: the same, each event serialised as the Dragonfly writer does;
- `dragonfly`: the same through the real Dragonfly writer;
- `execute`: `ExecuteJob.execute` (ledger claim and finish, metrics, the `end`
  event), results handed to a publisher that drops them;
- `traced` (with `--tracing`): `execute` with tracing on, exporting over OTLP/HTTP
  to a receiver in another process (the job span, model, tool and publish spans);
- `nats`: the job published to the intake subject, run by the service's own NATS
  consumer in this process, its result event awaited (this includes the bench's
  publishing and receiving, about 0.2 ms a job).

All on the service's own adapters (`bootstrap.Container`, production settings)
against the bench's backing servers (`python -m bench` explains them). CPU per
job is this process's user+system time divided by the jobs, the minimum over
`--rounds` interleaved rounds. What `serve` adds beyond `nats` (the HTTP
server, the process) is what `python -m bench` shows over this.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from agent_executor.adapters import config as cfg
from agent_executor.adapters.dragonfly.writer import _data_json
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.stream import STREAM_MODES
from agent_executor.bootstrap import Container
from agent_executor.domain.events import utc_timestamp
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import parse_job
from agent_executor.domain.result import JobResult
from bench.jobs import job_data, shape_template, structured_event
from bench.servers import Backing, backing_servers

LAYERS = ("invoke", "stream", "runtime", "encode", "dragonfly", "execute", "nats")


class _DroppedResults:
    async def publish(self, result: JobResult) -> None:
        return None


async def _drop(event_type: str, data: Mapping[str, Any]) -> None:
    return None


async def measure(backing: Backing, shape: str, concurrency: int, jobs: int,
                  rounds: int, otlp_endpoint: str | None = None) -> dict[str, list[float]]:
    layers = LAYERS if otlp_endpoint is None else (*LAYERS[:-1], "traced", LAYERS[-1])
    env = {**backing.service_env(), "MAX_CONCURRENT_JOBS": str(concurrency)}
    container = Container(settings=cfg.load_settings(env))
    ledger = await container.ledger()
    events = await container.events()
    runtime = await container.runtime()
    execute = ExecuteJob(ledger, runtime, events, _DroppedResults(), container.metrics(),
                         owner="bench-layers", max_concurrent=concurrency,
                         job_timeout_seconds=120)
    traced = None
    if otlp_endpoint is not None:  # this branch's tracing adapters, wired as bootstrap does
        from agent_executor.adapters.otel.publisher import TracedResultPublisher
        from agent_executor.adapters.otel.tracer import OtelJobTracer, tracer_provider
        from agent_executor.bootstrap import _runtime
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        tracer = OtelJobTracer(tracer_provider("agent-executor-bench"))
        traced = ExecuteJob(ledger, _runtime(await container.checkpointer(), container.settings(),
                                             container.metrics(), tracer),
                            events, TracedResultPublisher(_DroppedResults(), tracer.tracer),
                            container.metrics(), owner="bench-layers-traced",
                            max_concurrent=concurrency, job_timeout_seconds=120,
                            tracer=tracer)
    consumer = await container.consumer()
    await consumer.start()
    results: dict[str, asyncio.Future[None]] = {}

    async def on_result(msg: Msg) -> None:
        job_id = (msg.headers or {}).get("Nats-Msg-Id", "").rpartition(":")[0]
        future = results.pop(job_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    prefix = backing.nats_settings.status_subject_prefix
    results_sub = await backing.nc.subscribe(f"{prefix}.*", cb=on_result)
    intake = backing.nats_settings.subject.replace("*", "layers")
    js = backing.nc.jetstream()
    template = shape_template(shape)
    definition = parse_definition(template["agent_definition"], runtime.registry.names())
    graph = (await runtime.compiler.acompile(definition)).graph
    messages = template["input_payload"]["messages"]

    async def one(layer: str, job_id: str) -> None:
        config: Any = {"configurable": {"thread_id": job_id}}
        state = {"messages": [dict(m) for m in messages]}
        if layer == "invoke":
            await graph.ainvoke(state, config, durability="sync")
            return
        if layer == "stream":
            async for _ in graph.astream(state, config, stream_mode=[*STREAM_MODES, "values"],
                                         subgraphs=True, version="v2", durability="sync"):
                pass
            return
        job = parse_job(job_data(template, job_id))
        if layer == "runtime":
            await runtime.run(job, _drop)
        elif layer == "encode":
            encoded: list[tuple[str, str, str]] = []

            async def encode(event_type: str, data: Mapping[str, Any]) -> None:
                encoded.append((event_type, utc_timestamp(), _data_json(data)))
            await runtime.run(job, encode)
        elif layer == "nats":
            done = asyncio.get_running_loop().create_future()
            results[job_id] = done
            await js.publish(intake, structured_event(job_data(template, job_id)),
                             headers={"Content-Type": "application/cloudevents+json"})
            await asyncio.wait_for(done, 120)
        elif layer == "dragonfly":
            writer = await events.writer(job_id, job.trace_id, run=1)
            try:
                await runtime.run(job, writer.emit)
            finally:
                await writer.aclose()
        elif layer == "traced":
            assert traced is not None
            await traced.execute(job, "nats")
        else:
            await execute.execute(job, "nats")

    async def batch(layer: str, count: int) -> None:
        slots = asyncio.Semaphore(concurrency)

        async def run(job_id: str) -> None:
            async with slots:
                await one(layer, job_id)
        await asyncio.gather(*(run(f"{backing.job_prefix}{layer}-{uuid.uuid4().hex[:12]}")
                               for _ in range(count)))

    try:
        for layer in layers:  # warm-up: caches, pools, the allocator
            await batch(layer, max(8, 2 * concurrency))
        gc.freeze()  # as `serve` does once started
        cpu: dict[str, list[float]] = {layer: [] for layer in layers}
        for _ in range(rounds):
            for layer in layers:
                started = time.process_time()
                await batch(layer, jobs)
                cpu[layer].append((time.process_time() - started) / jobs * 1000)
        return cpu
    finally:
        await results_sub.unsubscribe()
        await consumer.stop()
        await container.shutdown_resources()  # type: ignore[misc]


def _print(shape: str, concurrency: int, cpu: dict[str, list[float]]) -> None:
    print(f"\n{shape} C={concurrency}: CPU ms per job (min of {len(cpu['invoke'])} rounds), "
          "and what each layer adds to the one before")
    previous: float | None = None
    for layer in cpu:
        best = min(cpu[layer])
        added = "" if previous is None else f"{best - previous:+6.2f}"
        rounds = " ".join(f"{value:.1f}" for value in cpu[layer])
        print(f"  {layer:10s} {best:6.2f} {added:>7s}   rounds: {rounds}")
        previous = best


async def main_async(args: argparse.Namespace) -> int:
    async with backing_servers("agent-executor-layers-") as (backing, _):
        receiver = _receiver() if args.tracing else None
        try:
            endpoint = None
            if receiver is not None:
                assert receiver.stdout is not None
                endpoint = (await asyncio.to_thread(receiver.stdout.readline)).decode().strip()
            for shape in args.shapes:
                cpu = await measure(backing, shape, args.concurrency, args.jobs, args.rounds,
                                    endpoint)
                _print(shape, args.concurrency, cpu)
        finally:
            if receiver is not None:
                receiver.terminate()
                receiver.wait(10)
    return 0


def _receiver() -> subprocess.Popen[bytes]:
    """tests/otlp_receiver.py in a process of its own (its decoding is not the service's
    CPU); prints its endpoint, runs until terminated."""
    code = ("import sys, threading; from tests.otlp_receiver import OtlpReceiver; "
            "r = OtlpReceiver().__enter__(); print(r.endpoint, flush=True); "
            "threading.Event().wait()")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("single", "team", "both"), default="single")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=96, help="jobs per layer and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracing", action="store_true",
                        help="add the `traced` layer (OTLP/HTTP to a local receiver)")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.jobs < 1 or args.rounds < 1:
        parser.error("--concurrency, --jobs and --rounds must be >= 1")
    args.shapes = ["single", "team"] if args.shape == "both" else [args.shape]
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
