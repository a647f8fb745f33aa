"""The served API with API_TOKENS and CORS_ALLOW_ORIGINS set, in both profiles: the
settings reach the app (bootstrap), the list pages what was posted."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.integration.conftest import PostgresDatabase
from tests.integration.service import ServiceProcess, migrate
from tests.integration.test_service_http import job, post

TOKEN = "integration-token"
ORIGIN = "http://console.localhost:3000"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def test_served_api_on_the_embedded_ledger(tmp_path: Path) -> None:
    await _pages_posted_jobs_behind_a_token({}, tmp_path)


async def test_served_api_on_postgres(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    migrate(postgres_db.env())
    await _pages_posted_jobs_behind_a_token(postgres_db.env(), tmp_path)


async def _pages_posted_jobs_behind_a_token(backing: dict[str, str], tmp_path: Path) -> None:
    env = {"API_TOKENS": f"other, {TOKEN}", "CORS_ALLOW_ORIGINS": ORIGIN, **backing}
    service = await ServiceProcess(env, tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            tag = uuid.uuid4().hex[:6]
            posted = []
            for i in range(9):
                data = job(job_id=f"api-{tag}-{i}")
                refused = await post(client, service.url, data)
                assert refused.status_code == 401, refused.text
                answered = await post(client, service.url, data, **AUTH)
                assert answered.status_code == 200, answered.text
                posted.append(data["job_id"])
            assert (await client.get("/jobs")).status_code == 401
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            seen: list[str] = []
            params: dict[str, str] = {"limit": "4", "status": "completed"}
            while True:
                page = await client.get("/jobs", params=params, headers=AUTH)
                assert page.status_code == 200, page.text
                body = page.json()
                seen += [j["job_id"] for j in body["jobs"]]
                if body["next_cursor"] is None:
                    break
                params["cursor"] = body["next_cursor"]
            assert seen == posted[::-1]
            preflight = await client.options("/jobs", headers={
                "origin": ORIGIN, "access-control-request-method": "GET",
                "access-control-request-headers": "authorization"})
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            document = await client.get("/openapi.json", headers=AUTH)
            assert document.json()["openapi"] == "3.1.0"
        assert TOKEN not in service.logs()
    finally:
        service.kill()
