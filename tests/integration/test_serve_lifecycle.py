"""`agent-executor serve` as a process: how it starts, refuses, and stops."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service import ROOT, ServiceProcess, free_port, wait_for

HELLO = json.loads((ROOT / "examples/jobs/hello.json").read_text())
BINARY = {"ce-specversion": "1.0", "ce-source": "tests",
          "ce-type": "dev.my-platform.agent.execute", "content-type": "application/json"}
# A small grace, and a lease whose third (the bound on giving it back) is short.
QUICK_STOP = {"SHUTDOWN_GRACE_SECONDS": "1", "JOB_LEASE_SECONDS": "3"}


def slow_job(delay_ms: int = 4000, steps: int = 3) -> dict[str, Any]:
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"slow-{uuid.uuid4().hex[:8]}"
    model = data["agent_definition"]["nodes"][0]["config"]["model"]
    model["delay_ms"] = delay_ms
    model["responses"] = [
        {"content": f"Step {i}.", "tool_calls": [
            {"name": "write_file", "args": {"file_path": f"/s{i}.md", "content": "x"}}]}
        for i in range(steps)] + [{"content": "Done."}]
    return data


async def post(client: httpx.AsyncClient, url: str, data: dict[str, Any],
               **headers: str) -> httpx.Response:
    return await client.post(url + "/", content=json.dumps(data),
                             headers={**BINARY, "ce-id": uuid.uuid4().hex, **headers},
                             timeout=60)


async def running(client: httpx.AsyncClient, url: str, job_id: str) -> bool:
    response = await client.get(f"{url}/jobs/{job_id}")
    return response.status_code == 200 and response.json()["status"] == "running"


class RawFollower:
    """An SSE follower on a raw socket: sees exactly how the server ends the stream."""

    def __init__(self, port: int, job_id: str) -> None:
        self.port, self.job_id = port, job_id
        self.received = b""
        self.reset = False
        self.first_bytes = asyncio.Event()

    async def follow(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET /jobs/{self.job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await writer.drain()
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
                self.first_bytes.set()
        except ConnectionResetError:
            self.reset = True
        finally:
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def test_sigterm_answers_a_handed_back_job_503_and_ends_followers_cleanly(
        tmp_path: Path, client: httpx.AsyncClient) -> None:
    service = await ServiceProcess(QUICK_STOP, tmp_path).start()
    try:
        data = slow_job()
        answer = asyncio.create_task(post(client, service.url, data))
        await wait_for(lambda: running(client, service.url, data["job_id"]), 20,
                       "the job to run")
        follower = RawFollower(service.port, data["job_id"])
        following = asyncio.create_task(follower.follow())
        await asyncio.wait_for(follower.first_bytes.wait(), 10)
        code = await asyncio.to_thread(service.terminate, 30)
        response = await asyncio.wait_for(answer, 30)
        await asyncio.wait_for(following, 10)
    finally:
        service.kill()
    assert code == 0
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert set(body) == {"error", "details"} and "shutting down" in body["error"]
    assert not follower.reset
    head, _, stream = follower.received.partition(b"\r\n\r\n")
    assert b" 200 " in head and b"transfer-encoding: chunked" in head.lower()
    assert stream.endswith(b"0\r\n\r\n"), stream[-200:]  # the chunked terminator
    assert b"retry: " in stream.rsplit(b"retry: 2000", 1)[-1]  # a hint after the first
    assert "1 job(s) handed back" in service.logs()


def test_a_port_in_use_exits_non_zero_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = ServiceProcess({}, tmp_path, port=port)
        done = subprocess.run([sys.executable, "-m", "agent_executor", "serve"],
                              env=service.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [f"agent-executor serve: cannot listen on 127.0.0.1:{port}: "
                     "address already in use"], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


async def test_ctrl_c_with_clients_connected_prints_no_traceback_and_counts_jobs(
        tmp_path: Path, client: httpx.AsyncClient) -> None:
    service = await ServiceProcess(QUICK_STOP, tmp_path).start()
    try:
        sync_job, async_job = slow_job(), slow_job()
        answer = asyncio.create_task(post(client, service.url, sync_job))
        accepted = await post(client, service.url, async_job, prefer="respond-async")
        assert accepted.status_code == 202
        for data in (sync_job, async_job):
            await wait_for(lambda d=data: running(client, service.url, d["job_id"]), 20,
                           "the jobs to run")
        follower = RawFollower(service.port, async_job["job_id"])
        following = asyncio.create_task(follower.follow())
        await asyncio.wait_for(follower.first_bytes.wait(), 10)
        assert service.proc is not None
        service.proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(service.proc.wait, 30)
        response = await asyncio.wait_for(answer, 10)
        await asyncio.wait_for(following, 10)
    finally:
        service.kill()
    logs = service.logs()
    assert code == 0, logs
    assert "Traceback" not in logs and "Task exception" not in logs, logs
    assert "SIGINT received" in logs
    assert "stopped: 2 job(s) handed back" in logs, logs
    assert response.status_code == 503
    assert follower.received.endswith(b"0\r\n\r\n") and not follower.reset


async def test_a_second_service_process_on_a_free_port_still_starts(tmp_path: Path) -> None:
    """The port check refuses only a busy port: the next free one serves."""
    service = await ServiceProcess({}, tmp_path, port=free_port()).start()
    try:
        assert service.terminate() == 0
    finally:
        service.kill()
