"""What the fault tests share: a production-profile stack on throwaway servers, worker
processes, a load of scripted jobs, and the exactly-once checks read back from the
AGENT_STATUS stream, the final thread state and the Dragonfly replay buffers."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from redis.asyncio import Redis

from agent_executor.adapters.config import NATS_STATUS_STREAM_NAME, NatsSettings
from agent_executor.adapters.dragonfly.event_stream import CHANNEL_PREFIX
from agent_executor.adapters.dragonfly.writer import StreamKeys
from agent_executor.adapters.nats.codec import MSG_ID_HEADER
from agent_executor.adapters.nats.streams import ensure_local_streams
from tests.integration.service import ROOT, ServiceProcess, migrate, wait_for
from tests.reliability.servers import NatsServer, PostgresServer, RedisServer

HELLO: dict[str, Any] = json.loads((ROOT / "examples/jobs/hello.json").read_text())
EXECUTE_TYPE = "dev.my-platform.agent.execute"
# The consumer as the deploy manifest defines it, except a short ack_wait (a job
# held by a SIGKILLed worker comes back after seconds, not a minute) and more
# deliveries: under a kill every few seconds a message can be delivered to a
# worker that dies five times, and JetStream then drops it with no result (no
# process lives to publish the `failed` one). `MAX_DELIVERIES_ADVISORY` makes a
# test say so at once instead of timing out.
ACK_WAIT_SECONDS = 4
MAX_DELIVER = 10
LEASE_SECONDS = 2
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
LOST_AFTER_SECONDS = 3.0  # settled with results missing for this long: they are lost


def nats_settings(url: str) -> NatsSettings:
    """Config defaults (stream, consumer, subjects) with the tests' short ack_wait."""
    return NatsSettings(url=url, stream_name="AGENT_EXECUTION",
                        consumer_group="agent-executor-workers", subject="agent.execute.*",
                        status_subject_prefix="agent.status",
                        ack_wait_seconds=ACK_WAIT_SECONDS, max_deliver=MAX_DELIVER)


def scripted_job(delay_ms: int) -> dict[str, Any]:
    """examples/jobs/hello.json (three model turns, two tools) under a fresh job_id."""
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"rel-{uuid.uuid4().hex[:12]}"
    data["trace_id"] = uuid.uuid4().hex
    data["agent_definition"]["nodes"][0]["config"]["model"]["delay_ms"] = delay_ms
    return data


def structured(data: dict[str, Any]) -> bytes:
    return json.dumps({"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/reliability",
                       "type": EXECUTE_TYPE, "datacontenttype": "application/json",
                       "data": data}).encode()


@dataclass
class Stack:
    """Throwaway PostgreSQL, redis-server and nats-server, migrated and with the
    streams and consumer in place; `workers` are `agent-executor serve` processes."""

    tmp: Path
    postgres: PostgresServer
    redis: RedisServer
    nats_server: NatsServer
    database: str = "agent_executor"
    max_concurrent_jobs: int = 8
    workers: list[ServiceProcess] = field(default_factory=list)
    kills: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"AGENT_EXECUTOR_PROFILE": "production", **self.postgres.env(self.database),
                **self.redis.env(), **self.nats_server.env(),
                "JOB_LEASE_SECONDS": str(LEASE_SECONDS), "SHUTDOWN_GRACE_SECONDS": "5",
                "MAX_CONCURRENT_JOBS": str(self.max_concurrent_jobs), "LOG_LEVEL": "INFO",
                **self.extra_env}

    async def prepare(self) -> None:
        await asyncio.gather(asyncio.to_thread(self.postgres.start),
                             asyncio.to_thread(self.redis.start),
                             asyncio.to_thread(self.nats_server.start))
        await asyncio.to_thread(self.postgres.create_database, self.database)
        await asyncio.to_thread(migrate, self.postgres.env(self.database))
        client = await nats.connect(self.nats_server.url)
        try:
            await ensure_local_streams(client.jetstream(), nats_settings(self.nats_server.url))
        finally:
            await client.close()

    async def start_workers(self, count: int) -> None:
        await asyncio.gather(*(self.start_worker(i) for i in range(count)))

    async def start_worker(self, index: int) -> ServiceProcess:
        worker = ServiceProcess(self.env, self.tmp / f"worker-{index}")
        if index < len(self.workers):
            self.workers[index] = worker
        else:
            self.workers.extend([worker])
        return await worker.start(timeout=90)

    async def kill_and_restart(self, index: int) -> None:
        self.workers[index].kill()
        self.kills += 1
        await self.start_worker(index)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.kill()

    async def ledger_rows(self, sql: str) -> list[Any]:
        """Rows of a query on the stack's ledger database."""
        env = self.postgres.env(self.database)
        conn = await asyncpg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]),
                                     user=env["POSTGRES_USER"],
                                     password=env["POSTGRES_PASSWORD"], database=self.database)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log}\n{w.logs()[-4000:]}" for w in self.workers)

    async def metrics(self, worker: ServiceProcess) -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{worker.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text



@dataclass(frozen=True)
class StoredResult:
    msg_id: str
    subject: str
    data: dict[str, Any]


class Observer:
    """The test's own view: publishes jobs and reads results (NATS), stream buffers
    (Dragonfly). Reconnects by itself across a NATS restart."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client: Client | None = None
        self.redis = Redis(host="127.0.0.1", port=stack.redis.port, decode_responses=True)
        self.dropped: list[dict[str, Any]] = []  # max-deliveries advisories

    async def __aenter__(self) -> Observer:
        self.client = await nats.connect(self.stack.nats_server.url, max_reconnect_attempts=-1,
                                         reconnect_time_wait=0.2)

        async def on_dropped(msg: Any) -> None:
            self.dropped.append(json.loads(msg.data))
        await self.client.subscribe(MAX_DELIVERIES_ADVISORY, cb=on_dropped)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.client is not None:
            await self.client.close()
        await self.redis.aclose()

    @property
    def js(self) -> JetStreamContext:
        assert self.client is not None
        return self.client.jetstream()

    async def publish(self, jobs: list[dict[str, Any]], *, twice_every: int = 0) -> None:
        """One message per job; with `twice_every` n, every n-th job is sent twice in a
        row (a producer's retry), so both copies are likely taken at once."""
        for i, data in enumerate(jobs):
            copies = 2 if twice_every and i % twice_every == 0 else 1
            for _ in range(copies):
                await self.js.publish("agent.execute.job", structured(data),
                                      headers={"Content-Type": "application/cloudevents+json"})

    async def results(self) -> list[StoredResult]:
        """Every job result stored on AGENT_STATUS, in order (rejections of unreadable
        messages, never a job's result, are left out: see `rejections`)."""
        return [r for r in await self._stored() if not r.subject.endswith(".rejected")]

    async def rejections(self) -> list[StoredResult]:
        return [r for r in await self._stored() if r.subject.endswith(".rejected")]

    async def _stored(self) -> list[StoredResult]:
        info = await self.js.stream_info(NATS_STATUS_STREAM_NAME)
        stored = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await self.js.get_msg(NATS_STATUS_STREAM_NAME, seq)
                event = json.loads(msg.data or b"{}")
                stored.append(StoredResult((msg.headers or {}).get(MSG_ID_HEADER, ""),
                                           msg.subject or "", event["data"]))
        return stored

    async def settled(self) -> bool:
        """Nothing left to deliver: every message acked or terminated."""
        settings = nats_settings(self.stack.nats_server.url)
        info = await self.js.consumer_info(settings.stream_name, settings.consumer_group)
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def finished_jobs(self) -> int:
        try:
            return len({r.data["job_id"] for r in await self.results()})
        except (nats.errors.Error, OSError, TimeoutError):
            return -1  # NATS restarting: ask again

    async def wait_all_done(self, count: int, timeout: float) -> list[StoredResult]:
        """Until `count` jobs have a result and the consumer has nothing in flight.

        Fails early when the consumer stays settled with results missing: a message
        is acked only after its result is stored, so those jobs are lost."""
        loop = asyncio.get_running_loop()
        short_since: float | None = None

        async def done() -> bool:
            nonlocal short_since
            if self.dropped:
                raise AssertionError(f"JetStream dropped message(s) after {MAX_DELIVER} "
                                     f"deliveries: {self.dropped}")
            try:
                finished = await self.finished_jobs()
                settled = await self.settled()
            except (nats.errors.Error, OSError, TimeoutError):
                return False
            if not settled or finished >= count:
                short_since = None
                return settled
            short_since = short_since or loop.time()
            if loop.time() - short_since > LOST_AFTER_SECONDS:
                raise AssertionError(f"nothing left to deliver, yet {count - finished} "
                                     "job(s) have no result: lost")
            return False
        try:
            await wait_for(done, timeout, f"{count} results and a settled consumer",
                           interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {await self.finished_jobs()} finished\n"
                                 f"{self.stack.logs()}") from None
        return await self.results()

    async def stream_events(self, job_id: str) -> list[dict[str, Any]]:
        keys = StreamKeys.for_job(CHANNEL_PREFIX, job_id)
        return [json.loads(raw) for raw in await self.redis.lrange(keys.replay, 0, -1)]


def _described(results: Any) -> list[tuple[str, Any, Any]]:
    return [(r.msg_id, r.data.get("attempts"), r.data.get("error")) for r in results]


def check_exactly_once(jobs: list[dict[str, Any]], results: list[StoredResult]) -> None:
    """Each job: exactly one result message, `{job_id}:completed`; its final thread
    holds its input message once."""
    ids = {job["job_id"] for job in jobs}
    per_job = Counter(r.data["job_id"] for r in results)
    missing = sorted(ids - set(per_job))
    duplicated = {job_id: n for job_id, n in per_job.items() if n != 1}
    strangers = sorted(set(per_job) - ids)
    assert not missing, f"{len(missing)} job(s) without a result: {missing[:5]}"
    assert not duplicated, "job(s) with more than one result: " + "; ".join(
        f"{job_id}: {_described(r for r in results if r.data['job_id'] == job_id)}"
        for job_id in duplicated)
    assert not strangers, f"results of jobs never sent: {strangers[:5]}"
    msg_ids = Counter(r.msg_id for r in results)
    assert all(n == 1 for n in msg_ids.values()), "a Nats-Msg-Id stored twice"
    for result in results:
        job_id = result.data["job_id"]
        assert result.msg_id == f"{job_id}:completed", (result.msg_id, result.data)
        assert result.subject == "agent.status.completed"
        messages = result.data["result"]["messages"]
        inputs = [m for m in messages if m["role"] == "user"]
        assert len(inputs) == 1, f"{job_id}: the thread holds its input {len(inputs)} times"
        files = result.data["result"]["files"]
        assert files == {"/hello.md": "# Hello\n\nHello, world!\n"}, (job_id, files, messages)


async def check_streams_gapless(observer: Observer, jobs: list[dict[str, Any]]) -> None:
    """Each job's replay buffer: seq 1..n, each once, `end` exactly once and last."""
    problems = []
    for job in jobs:
        events = await observer.stream_events(job["job_id"])
        seqs = [e["seq"] for e in events]
        ends = [e for e in events if e["event_type"] == "end"]
        if sorted(seqs) != list(range(1, len(seqs) + 1)):
            problems.append(f"{job['job_id']}: seq not 1..{len(seqs)}: {sorted(seqs)}")
        elif len(ends) != 1 or max(events, key=lambda e: e["seq"])["event_type"] != "end":
            problems.append(f"{job['job_id']}: {len(ends)} end event(s), last is "
                            f"{max(events, key=lambda e: e['seq'])['event_type']}")
    assert not problems, f"{len(problems)} job stream(s) broken: {problems[:5]}"


def metric_value(exposition: str, name: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total
