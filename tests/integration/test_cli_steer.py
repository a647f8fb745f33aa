"""`agent-executor status | cancel | resume | retry` against a real `serve` (embedded
profile, behind API_TOKENS), and `serve --host/--port`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.service import BASE_ENV_DROP, ROOT, ServiceProcess, free_port, wait_for
from tests.integration.test_service_http import job, post, slow_job

TOKEN = "cli-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
APPROVAL = json.loads((ROOT / "examples/jobs/approval.json").read_text())


async def cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BASE_ENV_DROP)}
    if token:
        env["AGENT_EXECUTOR_TOKEN"] = token
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agent_executor", *args], env=env,
        capture_output=True, text=True, timeout=60)


async def status(client: httpx.AsyncClient, job_id: str) -> str:
    return str((await client.get(f"/jobs/{job_id}", headers=AUTH)).json()["status"])


async def test_status_cancel_resume_and_retry_by_url(tmp_path: Path) -> None:
    service = await ServiceProcess({"API_TOKENS": TOKEN}, tmp_path).start()
    url = ["--url", service.url]
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            slow = slow_job(steps=20, delay_ms=500)
            assert (await post(client, service.url, slow, Prefer="respond-async",
                               **AUTH)).status_code == 202
            job_id = slow["job_id"]
            await wait_for(lambda: status(client, job_id), 30, "the job to be recorded")
            shown = await cli("status", job_id, *url)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.startswith(f"job {job_id}: ")
            refused = await cli("status", job_id, *url, token=None)
            assert refused.returncode == 3 and "token" in refused.stderr

            cancelled = await cli("cancel", job_id, "--reason", "from the CLI", *url)
            assert cancelled.returncode == 0, cancelled.stderr
            await wait_for(lambda: _is(client, job_id, "cancelled"), 10, "cancelled")
            again = await cli("cancel", job_id, *url)
            assert again.returncode == 5 and "Traceback" not in again.stderr, again.stderr
            described = await cli("status", job_id, *url)
            assert "reason: from the CLI" in described.stdout
            assert (await cli("status", "no-such-job", *url)).returncode == 4

            retried = await cli("retry", job_id, *url)
            assert retried.returncode == 0 and "(run 2)" in retried.stdout, retried.stderr
            assert (await cli("cancel", job_id, "--reason", "done", *url)).returncode == 0

            waiting = job(APPROVAL)
            assert (await post(client, service.url, waiting, Prefer="respond-async",
                               **AUTH)).status_code == 202
            await wait_for(lambda: _is(client, waiting["job_id"], "interrupted"), 30,
                           "the approval job to wait")
            shown = await cli("status", waiting["job_id"], *url)
            assert "[1] write_file" in shown.stdout, shown.stdout
            wrong = await cli("resume", waiting["job_id"], "--interrupt-id", "nope",
                              "--approve", *url)
            assert wrong.returncode == 5, wrong.stderr
            resumed = await cli("resume", waiting["job_id"], "--approve", *url)
            assert resumed.returncode == 0, resumed.stderr
            await wait_for(lambda: _is(client, waiting["job_id"], "completed"), 30,
                           "the approved job to complete")
            body = (await client.get(f"/jobs/{waiting['job_id']}", headers=AUTH)).json()
            assert "/hello.md" in body["result"]["files"]
    finally:
        service.kill()


async def _is(client: httpx.AsyncClient, job_id: str, wanted: str) -> bool:
    return await status(client, job_id) == wanted


async def test_serve_host_and_port_override_the_environment(tmp_path: Path) -> None:
    port = free_port()
    # HOST an address this machine does not have (binding it fails), PORT another port:
    # the service answers on 127.0.0.1:port only if both options win.
    env = {"HOST": "192.0.2.1", "PORT": str(free_port())}
    service = ServiceProcess(env, tmp_path, port=port,
                             args=["--host", "127.0.0.1", "--port", str(port)])
    await service.start(timeout=30)
    service.kill()
