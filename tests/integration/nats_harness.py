"""What the NATS integration tests share: unique stream names, a consumer wired to a
real ledger, a hand-written agent runtime, a throwaway nats-server, bounded waits."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import ConsumerInfo, RawStreamMsg

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.config import NatsSettings
from agent_executor.adapters.embedded.event_stream import InProcessEventStream
from agent_executor.adapters.embedded.sqlite_ledger import SqliteJobLedger
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.codec import binary_headers
from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.consumer import NatsJobConsumer
from agent_executor.adapters.nats.publisher import NatsResultPublisher
from agent_executor.adapters.nats.settlement import RetryPolicy
from agent_executor.adapters.nats.streams import ensure_local_streams
from agent_executor.adapters.otel.publisher import TracedResultPublisher
from agent_executor.adapters.otel.tracer import OtelJobTracer
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job
from agent_executor.domain.result import JobRecord
from agent_executor.domain.untraced import UNTRACED
from agent_executor.ports.events import EventStream
from agent_executor.ports.ledger import JobLedger
from agent_executor.ports.publisher import ResultPublisher
from agent_executor.ports.runtime import AgentRuntime
from tests.unit.fakes import FakeRuntime as ScriptedRuntime  # the same fake, shared

NAMES = EventNames()


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                     timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class BrokenLedger:
    """Wraps a ledger; while `down`, every call (or only those named in `only`) raises
    `DependencyUnavailable`."""

    def __init__(self, inner: JobLedger, only: frozenset[str] | None = None) -> None:
        self.inner = inner
        self.down = True
        self.only = only

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down and (self.only is None or name in self.only):
                raise DependencyUnavailable("the ledger is down (test)")
            return await method(*args, **kwargs)
        return call

    async def claim(self, job: Job, source: str, owner: str, lease_seconds: float) -> JobRecord:
        if self.down:
            raise DependencyUnavailable("the ledger is down (test)")
        return await self.inner.claim(job, source, owner, lease_seconds)


def job_data(job_id: str | None = None) -> dict[str, Any]:
    return {"job_id": job_id or f"job-{uuid.uuid4().hex[:10]}", "trace_id": uuid.uuid4().hex,
            "agent_definition": {"name": "test", "nodes": []},
            "input_payload": {"messages": [{"role": "user", "content": "Write the spec"}]}}


def structured_event(data: Mapping[str, Any], **attrs: str) -> bytes:
    return json.dumps({"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/tests",
                       "type": NAMES.execute_type, "datacontenttype": "application/json",
                       **attrs, "data": dict(data)}).encode()


def binary_event(data: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    headers = binary_headers({"specversion": "1.0", "id": uuid.uuid4().hex,
                              "source": "/tests producer", "type": NAMES.execute_type,
                              "datacontenttype": "application/json"})
    return headers, json.dumps(dict(data)).encode()


@dataclass
class World:
    """One test's NATS names, ledger and wiring; `consumer()` builds a replica."""

    url: str
    tmp: Path
    settings: NatsSettings
    status_stream: str
    client: Client
    ledger: JobLedger
    metrics: PrometheusMetrics = field(default_factory=PrometheusMetrics)
    events: EventStream | None = None
    runtime: ScriptedRuntime = field(default_factory=ScriptedRuntime)
    connections: list[NatsConnection] = field(default_factory=list)
    consumers: list[NatsJobConsumer] = field(default_factory=list)

    @property
    def js(self) -> Any:
        return self.client.jetstream()

    async def consumer(self, *, max_concurrent: int = 4, grace_seconds: float = 10.0,
                       runtime: ScriptedRuntime | None = None, ledger: JobLedger | None = None,
                       retry: RetryPolicy | None = None, url: str | None = None,
                       lease_seconds: float = 30.0,
                       consumer_check_seconds: float = 10.0,
                       max_event_bytes: int | None = None,
                       give_up_seconds: float = 2.0,
                       runtime_any: AgentRuntime | None = None,
                       tracer: OtelJobTracer | None = None) -> NatsJobConsumer:
        connection = await NatsConnection.connect(url or self.url, reconnect_wait_seconds=0.2)
        self.connections.append(connection)
        publisher: ResultPublisher = NatsResultPublisher(connection, self.settings, NAMES,
                                                         self.metrics)
        if tracer is not None:
            publisher = TracedResultPublisher(publisher, tracer.tracer)
        events = self.events or InProcessEventStream(self.metrics)
        self.events = events
        execute = ExecuteJob(ledger or self.ledger, runtime_any or runtime or self.runtime,
                             events, publisher, self.metrics,
                             owner=f"test-{uuid.uuid4().hex[:6]}",
                             max_concurrent=max_concurrent, job_timeout_seconds=60,
                             lease_seconds=lease_seconds, tracer=tracer or UNTRACED)
        consumer = NatsJobConsumer(connection, execute, self.settings, NAMES, self.metrics,
                                   grace_seconds=grace_seconds, create_streams=True,
                                   status_stream=self.status_stream,
                                   retry=retry or RetryPolicy(0.1, 2, 1), fetch_timeout_seconds=1,
                                   consumer_check_seconds=consumer_check_seconds,
                                   max_event_bytes=max_event_bytes,
                                   give_up_seconds=give_up_seconds)
        self.consumers.append(consumer)
        await consumer.start()
        return consumer

    def subject(self, suffix: str = "x") -> str:
        return self.settings.subject.replace("*", suffix)

    async def publish(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        await self.js.publish(self.subject(), body, headers=headers)

    async def results(self) -> list[RawStreamMsg]:
        info = await self.js.stream_info(self.status_stream)
        return [await self.js.get_msg(self.status_stream, seq)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
                if info.state.messages]

    async def consumer_info(self) -> ConsumerInfo:
        info: ConsumerInfo = await self.js.consumer_info(self.settings.stream_name,
                                                         self.settings.consumer_group)
        return info

    async def settled(self) -> bool:
        info = await self.consumer_info()
        return info.num_pending == 0 and info.num_ack_pending == 0

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"agent_executor_{name}", labels or None)
        return value or 0.0

    async def close(self) -> None:
        for consumer in self.consumers:
            await consumer.stop()
        for connection in self.connections:
            await connection.aclose()


def unique_settings(url: str, **overrides: Any) -> tuple[NatsSettings, str]:
    tag = uuid.uuid4().hex[:10]
    settings = NatsSettings(url=url, stream_name=f"T{tag}_EXECUTION",
                            consumer_group=f"t{tag}-workers", subject=f"t{tag}.execute.*",
                            status_subject_prefix=f"t{tag}.status", ack_wait_seconds=5,
                            max_deliver=5)
    return replace(settings, **overrides), f"T{tag}_STATUS"


async def open_world(url: str, tmp: Path, **overrides: Any) -> World:
    settings, status_stream = unique_settings(url, **overrides)
    client = await nats.connect(url)
    await ensure_local_streams(client.jetstream(), settings, status_stream=status_stream)
    ledger = await SqliteJobLedger.create(tmp / f"ledger-{uuid.uuid4().hex[:6]}.sqlite3")
    return World(url, tmp, settings, status_stream, client, ledger)


async def close_world(world: World) -> None:
    await world.close()
    for stream in (world.settings.stream_name, world.status_stream):
        try:
            await world.js.delete_stream(stream)
        except Exception:  # the server may be gone already (restart tests)
            pass
    await world.client.close()
    assert isinstance(world.ledger, SqliteJobLedger)
    await world.ledger.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ThrowawayNats:
    """A `nats-server -js` of the test's own: free port, own store dir; stop/start keep
    the store, like a server restart."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("nats-server is not installed")
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

        async def accepts() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True
        await eventually(accepts, 10, "nats-server to listen")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
