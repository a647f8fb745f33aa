"""The production path end to end: `serve` in the production profile on PostgreSQL,
Dragonfly (Redis protocol) and NATS JetStream, jobs in and results out over NATS."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis

from tests.integration.conftest import PostgresDatabase
from tests.integration.service import (
    ROOT,
    ProductionBacking,
    ServiceProcess,
    production_backing,
    wait_for,
)

HELLO = json.loads((ROOT / "examples/jobs/hello.json").read_text())
EXECUTE_TYPE = "dev.my-platform.agent.execute"


class Production:
    def __init__(self, env: dict[str, str], backing: ProductionBacking,
                 service: ServiceProcess) -> None:
        self.env = env
        self.nats = backing.nats
        self.status_stream = backing.status_stream
        self.service = service


@pytest.fixture
async def production(postgres_db: PostgresDatabase, nats_url: str, dragonfly_port: int,
                     tmp_path: Path) -> AsyncIterator[Production]:
    async with production_backing(postgres_db, nats_url, dragonfly_port, "exec") as backing:
        env = {**backing.env, "MAX_CONCURRENT_JOBS": "4"}
        service = await ServiceProcess(env, tmp_path).start()
        try:
            yield Production(env, backing, service)
        finally:
            service.kill()


def new_job() -> dict[str, Any]:
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"nats-{uuid.uuid4().hex[:10]}"
    return data


def structured(data: dict[str, Any]) -> bytes:
    return json.dumps({"specversion": "1.0", "id": uuid.uuid4().hex, "source": "tests",
                       "type": EXECUTE_TYPE, "datacontenttype": "application/json",
                       "data": data}).encode()


async def stored_results(nc: Any, stream: str, subject: str) -> list[Any]:
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    messages = []
    try:
        while True:
            try:
                batch = await sub.fetch(50, timeout=0.5)
            except TimeoutError:
                return messages
            messages.extend(batch)
    finally:
        await sub.unsubscribe()


async def test_a_job_over_nats_gives_one_result_and_a_gapless_live_stream(
        production: Production, dragonfly_port: int) -> None:
    data = new_job()
    job_id = data["job_id"]
    prefix = production.nats.status_subject_prefix
    nc = await nats.connect(production.nats.url)
    redis = aioredis.Redis(port=dragonfly_port, decode_responses=True)
    live: list[dict[str, Any]] = []
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"langgraph:stream:{job_id}")

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                live.append(json.loads(message["data"]))
                if live[-1]["event_type"] == "end":
                    return

    listener = asyncio.create_task(listen())
    results: asyncio.Queue[Any] = asyncio.Queue()
    sub = await nc.subscribe(f"{prefix}.*", cb=results.put)
    try:
        js = nc.jetstream()
        await js.publish(f"{production.nats.subject[:-2]}.x", structured(data),
                         headers={"Content-Type": "application/cloudevents+json"})
        msg = await asyncio.wait_for(results.get(), 60)
        assert msg.subject == f"{prefix}.completed"
        assert msg.headers["Nats-Msg-Id"] == f"{job_id}:completed"
        event = json.loads(msg.data)
        assert (event["id"], event["type"], event["subject"]) == (
            f"{job_id}:completed", "dev.my-platform.agent.completed", job_id)
        assert event["data"]["status"] == "completed"
        assert event["data"]["result"]["files"] == {"/hello.md": "# Hello\n\nHello, world!\n"}
        assert event["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")

        await asyncio.wait_for(listener, 30)
        assert [e["seq"] for e in live] == list(range(1, len(live) + 1))
        assert live[-1]["data"]["status"] == "completed"
        assert {e["job_id"] for e in live} == {job_id}

        # the same job again: not run again, the bus de-duplicates the republished result
        await js.publish(f"{production.nats.subject[:-2]}.x", structured(data),
                         headers={"Content-Type": "application/cloudevents+json"})
        again = await asyncio.wait_for(results.get(), 60)
        assert json.loads(again.data) == event
        stored = await stored_results(nc, production.status_stream, f"{prefix}.*")
        assert [m.headers["Nats-Msg-Id"] for m in stored] == [f"{job_id}:completed"]

        import httpx
        async with httpx.AsyncClient() as client:
            status = (await client.get(f"{production.service.url}/jobs/{job_id}")).json()
            assert (status["status"], status["attempts"]) == ("completed", 1)
            ready = (await client.get(f"{production.service.url}/ready")).json()
            assert ready["status"] == "ready"
            assert all(c["ok"] and not c.get("embedded") for c in ready["checks"].values())
            metrics = (await client.get(f"{production.service.url}/metrics")).text
            assert 'agent_executor_jobs_total{source="nats",status="completed"} 1.0' in metrics
            assert 'agent_executor_nats_messages_processed_total{outcome="ack"} 2.0' in metrics
    finally:
        listener.cancel()
        await sub.unsubscribe()
        await pubsub.aclose()
        await redis.aclose()
        await nc.close()


async def test_sigterm_exits_zero_and_a_queued_job_is_not_lost(
        production: Production, tmp_path: Path) -> None:
    nc = await nats.connect(production.nats.url)
    try:
        js = nc.jetstream()
        data = new_job()
        data["agent_definition"]["nodes"][0]["config"]["model"]["delay_ms"] = 400
        await js.publish(f"{production.nats.subject[:-2]}.x", structured(data),
                         headers={"Content-Type": "application/cloudevents+json"})
        import httpx
        async with httpx.AsyncClient() as client:
            async def running() -> bool:
                r = await client.get(f"{production.service.url}/jobs/{data['job_id']}")
                return r.status_code == 200
            await wait_for(running, 30, "the job to start")
        assert production.service.terminate() == 0  # drains: finishes or hands back
        replacement = await ServiceProcess(production.env, tmp_path / "b").start()
        try:
            async with httpx.AsyncClient() as client:
                async def finished() -> Any:
                    r = await client.get(f"{replacement.url}/jobs/{data['job_id']}")
                    return r.json()["status"] == "completed" and r.json()
                status = await wait_for(finished, 60, "the job to complete")
            assert status["attempts"] in (1, 2)
            stored = await stored_results(nc, production.status_stream,
                                          f"{production.nats.status_subject_prefix}.*")
            assert [m.headers["Nats-Msg-Id"] for m in stored] == [
                f"{data['job_id']}:completed"]
        finally:
            replacement.kill()
    finally:
        await nc.close()
