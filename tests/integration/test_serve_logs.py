"""What `serve` writes to its log: JSON lines only in production, no user content at INFO."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import PostgresDatabase
from tests.integration.service import ROOT, ServiceProcess, production_backing

HELLO = json.loads((ROOT / "examples/jobs/hello.json").read_text())
BINARY = {"ce-specversion": "1.0", "ce-source": "tests",
          "ce-type": "dev.my-platform.agent.execute", "content-type": "application/json"}
SECRET = "private-words-of-the-user-91c2"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def job_with_content() -> dict[str, Any]:
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"logs-{uuid.uuid4().hex[:8]}"
    model = data["agent_definition"]["nodes"][0]["config"]["model"]
    model["responses"] = [
        {"content": f"Writing {SECRET}.", "tool_calls": [
            {"name": "write_file", "args": {"file_path": "/p.md", "content": SECRET}}]},
        {"content": f"Done: {SECRET}"}]
    data["input_payload"]["messages"][0]["content"] = f"Please write {SECRET}"
    return data


async def run_one_job_and_stop(service: ServiceProcess) -> None:
    await service.start()
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                service.url + "/", content=json.dumps(job_with_content()),
                headers={**BINARY, "ce-id": uuid.uuid4().hex}, timeout=60)
            assert response.status_code == 200 and SECRET in response.text
            await client.get(service.url + "/nowhere")  # a 404, logged or not
        assert await asyncio.to_thread(service.terminate, 60) == 0
    finally:
        service.kill()


async def test_production_logs_are_json_lines_only_without_user_content(
        postgres_db: PostgresDatabase, nats_url: str, dragonfly_port: int,
        tmp_path: Path) -> None:
    async with production_backing(postgres_db, nats_url, dragonfly_port, "logs") as backing:
        service = ServiceProcess(backing.env, tmp_path)
        await run_one_job_and_stop(service)
    lines = [line for line in service.logs().splitlines() if line.strip()]
    assert any("serving on" in line for line in lines)
    for line in lines:  # stdout and stderr both go to this file
        entry = json.loads(line)  # raises on the first line that is not JSON
        assert entry["level"] in LEVELS
        assert SECRET not in line, line


async def test_local_logs_hold_no_user_content_at_info(tmp_path: Path) -> None:
    """The embedded result publisher logs the result's id, status and size, not it."""
    service = ServiceProcess({"LOG_LEVEL": "INFO"}, tmp_path)
    await run_one_job_and_stop(service)
    logs = service.logs()
    assert "(NATS not configured, logged only)" in logs and "bytes" in logs
    assert SECRET not in logs
