"""`serve` with `WORKERS=2` in the production profile on the test servers: one port
and one durable consumer shared by two worker processes under a supervisor that
restarts a killed one, answers `/ready` for both, sums their metrics and drains
them all on SIGTERM (or a terminal's Ctrl-C)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from agent_executor.adapters.config import NatsSettings
from tests.integration.conftest import PostgresDatabase
from tests.integration.service import (
    ROOT,
    ProductionBacking,
    ServiceProcess,
    production_backing,
    wait_for,
)

HELLO = json.loads((ROOT / "examples/jobs/hello.json").read_text())
CE_JSON = {"Content-Type": "application/cloudevents+json"}
QUICK_STOP = {"SHUTDOWN_GRACE_SECONDS": "1", "JOB_LEASE_SECONDS": "3"}
# What the contract's section 8 lists and a hello job over NATS and HTTP touches.
CONTRACT_METRICS = (
    "jobs_total", "job_duration_seconds", "jobs_in_progress", "nats_messages_received_total",
    "nats_messages_processed_total", "nats_messages_failed_total", "nats_redeliveries_total",
    "stream_events_published_total", "stream_publish_errors_total", "http_requests_total",
    "jobs_waiting", "llm_requests_total", "llm_request_duration_seconds", "tool_calls_total")


@dataclass
class Stack:
    backing: ProductionBacking
    tmp_path: Path

    @property
    def nats(self) -> NatsSettings:
        return self.backing.nats

    @property
    def nc(self) -> Client:
        return self.backing.nc

    async def serve(self, name: str, new_session: bool = False, **extra: str) -> ServiceProcess:
        service = ServiceProcess({**self.backing.env, "WORKERS": "2", **extra},
                                 self.tmp_path / name, new_session=new_session)
        await service.start(timeout=90)
        return service

    async def publish(self, data: dict[str, Any]) -> None:
        event = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "tests",
                 "type": "dev.my-platform.agent.execute",
                 "datacontenttype": "application/json", "data": data}
        await self.nc.jetstream().publish(f"{self.nats.subject[:-2]}.x",
                                          json.dumps(event).encode(), headers=CE_JSON)


@pytest.fixture
async def stack(postgres_db: PostgresDatabase, nats_url: str, dragonfly_port: int,
                tmp_path: Path) -> AsyncIterator[Stack]:
    async with production_backing(postgres_db, nats_url, dragonfly_port, "wk") as backing:
        yield Stack(backing, tmp_path)


def worker_pids(service: ServiceProcess) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    assert service.proc is not None
    pid = service.proc.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_everything(service: ServiceProcess) -> None:
    """Cleanup: SIGTERM, so the supervisor removes its metrics directory; if it has
    not exited within a bound, SIGKILL to the workers, then the supervisor."""
    if service.proc is None or service.proc.poll() is not None:
        return
    service.proc.send_signal(signal.SIGTERM)
    try:
        service.proc.wait(60)
    except subprocess.TimeoutExpired:
        for pid in worker_pids(service):
            os.kill(pid, signal.SIGKILL)
        service.kill()


def new_job(delay_ms: int = 0, prefix: str = "wk") -> dict[str, Any]:
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"{prefix}-{uuid.uuid4().hex[:10]}"
    data["agent_definition"]["nodes"][0]["config"]["model"]["delay_ms"] = delay_ms
    return data


async def ready(client: httpx.AsyncClient, service: ServiceProcess) -> tuple[int, dict[str, Any]]:
    # A new connection each time: a kept-alive one would stay with one worker.
    answer = await client.get(f"{service.url}/ready", headers={"Connection": "close"},
                              timeout=5)
    return answer.status_code, answer.json()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """`agent_executor_{name}` samples of a Prometheus text page, by sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"agent_executor_{name}":
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def metrics_dir(worker: int) -> str:
    """The pod's multiprocess directory, as the supervisor gave it to a worker."""
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1] for e in environ
                if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")).decode()


def per_worker(folder: str, worker: int, name: str, **labels: str) -> float:
    """One worker's own count, from its file in the pod's multiprocess directory."""
    path = os.path.join(folder, f"counter_{worker}.db")
    if not os.path.exists(path):
        return 0.0
    return sum(sample.value
               for family in MultiProcessCollector.merge([path], accumulate=False)
               for sample in family.samples
               if sample.name == f"agent_executor_{name}" and sample.labels == labels)


async def test_two_workers_share_the_port_and_the_consumer_and_one_metrics_page(
        stack: Stack) -> None:
    service = await stack.serve("pod", MAX_CONCURRENT_JOBS="1")
    results: asyncio.Queue[Any] = asyncio.Queue()
    sub = await stack.nc.subscribe(f"{stack.nats.status_subject_prefix}.*", cb=results.put)
    try:
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: _is_ready(client, service), 60, "both workers ready")
            workers = worker_pids(service)
            assert len(workers) == 2
            folder = metrics_dir(workers[0])
            # HTTP: with one worker frozen, the other answers on the same port.
            answered = set()
            for frozen in workers:
                os.kill(frozen, signal.SIGSTOP)
                try:
                    code, body = await ready(client, service)
                finally:
                    os.kill(frozen, signal.SIGCONT)
                assert code == 200, body
                answered.add(re.search(r"this is worker (\d)", body["checks"]["workers"]
                                       ["detail"]).group(1))  # type: ignore[union-attr]
            assert answered == {"1", "2"}

            # NATS: one slot each, four jobs: both workers fetch from the one consumer.
            jobs = [new_job(delay_ms=300) for _ in range(4)]
            for data in jobs:
                await stack.publish(data)

            async def both_running() -> bool:
                page = (await client.get(f"{service.url}/metrics")).text
                return samples(page, "jobs_in_progress").get((), 0) == 2
            await wait_for(both_running, 30, "jobs_in_progress summed over both workers")
            got = [json.loads((await asyncio.wait_for(results.get(), 60)).data)
                   for _ in jobs]
            assert sorted(e["data"]["job_id"] for e in got) == sorted(d["job_id"] for d in jobs)
            assert {e["data"]["status"] for e in got} == {"completed"}

            async def settled() -> str | None:  # a message is acked after its result
                page = (await client.get(f"{service.url}/metrics")).text
                acked = samples(page, "nats_messages_processed_total")
                return page if acked == {(("outcome", "ack"),): 4} else None
            page = await wait_for(settled, 30, "every message acknowledged")
            ran = [per_worker(folder, w, "jobs_total", source="nats", status="completed")
                   for w in workers]
            assert sum(ran) == 4 and min(ran) >= 1, ran
            per_pid = [per_worker(folder, w, "http_requests_total", method="GET",
                                  route="/ready", status="200") for w in workers]
    finally:
        await sub.unsubscribe()
        stop_everything(service)
    assert samples(page, "jobs_total") == {(("source", "nats"), ("status", "completed")): 4}
    assert samples(page, "job_duration_seconds_count") == {(("status", "completed"),): 4}
    assert samples(page, "nats_messages_received_total") == {(): 4}
    assert samples(page, "jobs_in_progress") == {(): 0} and samples(page, "jobs_waiting") == {
        (): 0}
    ready_200 = (("method", "GET"), ("route", "/ready"), ("status", "200"))
    assert min(per_pid) >= 1 and samples(page, "http_requests_total")[ready_200] == sum(per_pid)
    names = {family.name for family in text_string_to_metric_families(page)}
    missing = [n for n in CONTRACT_METRICS
               if f"agent_executor_{n}".removesuffix("_total") not in names]
    assert missing == []


async def _is_ready(client: httpx.AsyncClient, service: ServiceProcess) -> bool:
    code, body = await ready(client, service)
    return code == 200 and body["checks"]["workers"]["ok"]


async def test_a_killed_worker_is_restarted_and_ready_says_so_until_it_is_back(
        stack: Stack) -> None:
    service = await stack.serve("pod")
    try:
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: _is_ready(client, service), 60, "both workers ready")
            victim, survivor = worker_pids(service)
            os.kill(victim, signal.SIGKILL)
            seen: list[str] = []

            async def not_ready_naming_a_worker() -> bool:
                code, body = await ready(client, service)
                if code == 503:
                    seen.append(body["checks"]["workers"]["detail"])
                    assert body["status"] == "not_ready"
                    assert {"postgres", "dragonfly", "nats"} <= set(body["checks"])
                    assert all(body["checks"][n]["ok"] for n in ("postgres", "dragonfly",
                                                                  "nats"))
                return code == 503
            await wait_for(not_ready_naming_a_worker, 30, "/ready to be 503")
            await wait_for(lambda: _is_ready(client, service), 90, "the restarted worker")
            now = worker_pids(service)
            assert survivor in now and victim not in now and len(now) == 2
    finally:
        stop_everything(service)
    restarted = re.search(rf"worker (\d) \(pid {victim}\) was killed by SIGKILL while "
                          r"serving: restarting it in 0\.5s", service.logs())
    assert restarted, service.logs()[-3000:]
    number = restarted.group(1)
    assert re.fullmatch(rf"worker {number} \(pid \d+\) (exited: restarting|is starting|has "
                        r"not checked its dependencies yet)", seen[0]), seen


async def test_sigterm_drains_every_worker_and_a_handed_back_job_finishes_once(
        stack: Stack) -> None:
    service = await stack.serve("pod", **QUICK_STOP)
    data = new_job(delay_ms=4000, prefix="drain")
    try:
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: _is_ready(client, service), 60, "both workers ready")
            workers = worker_pids(service)
            await stack.publish(data)

            async def running() -> bool:
                r = await client.get(f"{service.url}/jobs/{data['job_id']}")
                return r.status_code == 200 and r.json()["status"] == "running"
            await wait_for(running, 30, "the job to run")
        code = await asyncio.to_thread(service.terminate, 60)
    finally:
        stop_everything(service)
    logs = service.logs()
    assert code == 0, logs[-3000:]
    assert "Traceback" not in logs
    assert not [pid for pid in workers if alive(pid)]
    assert "SIGTERM received: stopping 2 worker(s)" in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    last = lines[-1]
    assert (last["logger"], "worker" in last) == ("agent_executor.adapters.workers.supervisor",
                                                  False)
    assert last["message"].startswith("stopped: 1 job(s) handed back unfinished")

    replacement = await stack.serve("after", WORKERS="1")
    try:
        async with httpx.AsyncClient() as client:
            async def finished() -> Any:
                r = await client.get(f"{replacement.url}/jobs/{data['job_id']}")
                return r.json()["status"] == "completed" and r.json()
            status = await wait_for(finished, 90, "the handed-back job to complete")
        assert status["attempts"] == 2
    finally:
        replacement.kill()
    stored = await _stored_results(stack)
    assert stored == [f"{data['job_id']}:completed"]


async def _stored_results(stack: Stack) -> list[str]:
    sub = await stack.nc.jetstream().pull_subscribe(f"{stack.nats.status_subject_prefix}.*",
                                                    stream=stack.backing.status_stream)
    ids: list[str] = []
    try:
        while True:
            try:
                batch = await sub.fetch(50, timeout=0.5)
            except TimeoutError:
                return ids
            ids += [m.headers["Nats-Msg-Id"] for m in batch if m.headers]
    finally:
        await sub.unsubscribe()


async def test_ctrl_c_on_a_terminal_stops_the_supervisor_and_its_workers_cleanly(
        stack: Stack) -> None:
    service = await stack.serve("pod", new_session=True, **QUICK_STOP)
    try:
        async with httpx.AsyncClient() as client:
            await wait_for(lambda: _is_ready(client, service), 60, "both workers ready")
            workers = worker_pids(service)
            assert service.proc is not None
            os.killpg(service.proc.pid, signal.SIGINT)  # the whole group, as a terminal does
            code = await asyncio.to_thread(service.proc.wait, 60)
    finally:
        stop_everything(service)
    logs = service.logs()
    assert code == 0, logs[-3000:]
    assert "Traceback" not in logs
    assert "SIGINT received: stopping 2 worker(s)" in logs
    # only the supervisor acted on the terminal's SIGINT; the workers on its SIGTERM
    assert logs.count('"message": "SIGTERM received: stopping"') == 2
    assert "SIGINT received: stopping\"" not in logs
    assert not [pid for pid in workers if alive(pid)]
