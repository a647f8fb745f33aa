"""The console in a real browser: Debian's Chromium driven by Playwright, against
`agent-executor serve` started as a real process (tests/integration/service.py).

Playwright never downloads a browser here: `scripts/ensure-chromium.sh` installs
the `chromium` package where it is missing. A failing test leaves a screenshot
of the page in `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.integration.service import ROOT, ServiceProcess

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1440, "height": 900}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        await context.close()
    assert not errors, f"the page raised: {errors}"


async def start_service(tmp_path: Path, **env: str) -> ServiceProcess:
    return await ServiceProcess({"AGENT_EXECUTOR_PROFILE": "local", **env},
                                tmp_path / "service").start()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    """The local profile: embedded ledger, checkpoints and stream, HTTP only."""
    process = await start_service(tmp_path)
    try:
        yield process
    finally:
        process.kill()


def example_job(name: str, *, delay_ms: int | None = None) -> dict[str, Any]:
    """examples/jobs/{name}.json under a job_id no other test uses, every scripted
    model answering after `delay_ms`."""
    job: dict[str, Any] = json.loads((ROOT / "examples/jobs" / f"{name}.json").read_text())
    job["job_id"] = f"{name}-{uuid.uuid4().hex[:8]}"
    if delay_ms is not None:
        for node in job["agent_definition"]["nodes"]:
            node["config"]["model"]["delay_ms"] = delay_ms
    return job


async def post_job(service: ServiceProcess, job: dict[str, Any], token: str | None = None
                   ) -> str:
    headers = {"ce-specversion": "1.0", "ce-id": uuid.uuid4().hex, "ce-source": "tests",
               "ce-type": "dev.my-platform.agent.execute",
               "content-type": "application/json", "prefer": "respond-async"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=service.url) as client:
        response = await client.post("/", content=json.dumps(job), headers=headers)
    assert response.status_code == 202, response.text
    return str(job["job_id"])
