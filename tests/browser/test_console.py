"""The console (`GET /ui`) in Chromium against a real service: the live list, one
job's live stream, cancel, an interrupt approved from the page, and API_TOKENS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser.conftest import ARTIFACTS, example_job, post_job, start_service
from tests.integration.service import ServiceProcess, wait_for

pytestmark = pytest.mark.browser

LIVE = 30_000  # ms: the longest a page condition may take here (a job's whole run)


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'#job-rows tr[data-job-id="{job_id}"]')


async def paused_request(service: ServiceProcess, page: Page, decision: str) -> Locator:
    """Post examples/jobs/approval.json, open it, and pick `decision` for its one
    pending call (the write_file) once the page shows it."""
    job_id = await post_job(service, example_job("approval"))
    await page.goto(f"{service.url}/ui#job={job_id}")
    request = page.locator("#interrupt .request").first
    await request.locator(f'button[data-decision="{decision}"]').click(timeout=LIVE)
    return request


async def send_decisions(page: Page) -> None:
    await page.locator("#interrupt").get_by_role("button", name="Send decision").click()


async def expect_status(page: Page, status: str) -> None:
    await expect(page.locator("#job-status")).to_have_attribute("data-status", status,
                                                                timeout=LIVE)


async def test_a_posted_job_appears_in_the_list_and_its_stream_renders_live(
        service: ServiceProcess, page: Page) -> None:
    await page.goto(f"{service.url}/ui")
    await expect(page.locator("#jobs-empty")).to_be_visible()
    job_id = await post_job(service, example_job("spec-builder", delay_ms=800))

    await expect(row(page, job_id)).to_be_visible()  # the list's poll found it
    await row(page, job_id).click()
    await expect(page.locator("#job-title")).to_have_text(job_id)
    orchestrator = page.locator('.agent[data-agent="Orchestrator"]')
    await expect(orchestrator.locator(".tokens").first).to_contain_text(
        "I will plan the spec", timeout=LIVE)
    # Live: the first answer is on the page while the job still runs (seven more
    # answers, 800 ms each, are to come).
    await expect(page.locator("#job-status")).to_have_attribute("data-status", "running")
    await expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")

    await expect_status(page, "completed")
    await expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
    await expect(row(page, job_id).locator(".badge")).to_have_text("completed")
    # tokens grouped by agent, each tool call paired with its result
    for agent in ("Orchestrator", "requirements-analyst", "architect"):
        await expect(page.locator(f'.agent[data-agent="{agent}"]')).to_be_visible()
    writes = page.locator('.agent[data-agent="architect"] .tool[data-tool="write_file"]')
    await expect(writes.locator(".tool-state")).to_have_text("success")
    await expect(orchestrator.locator('.tool[data-tool="task"] .tool-state')).to_have_text(
        ["success", "success"])
    await expect(page.locator("#todos li")).to_have_text(["◐Requirements", "○Architecture"])
    await expect(page.locator("#files .file-tab")).to_have_text(
        ["/spec/requirements.md", "/spec/architecture.md"])
    await page.locator('#files .file-tab[data-path="/spec/architecture.md"]').click()
    await expect(page.locator("#files .file-content")).to_contain_text("base62 counters")
    await expect(page.locator("#outcome")).to_contain_text("The spec is ready")
    await expect(page.locator('.fact[data-fact="attempts"] dd')).to_have_text("1")
    ARTIFACTS.mkdir(exist_ok=True)  # the README's picture: docs/images/console.png
    await page.screenshot(path=str(ARTIFACTS / "console.png"))


async def test_the_list_filters_by_status_and_source_and_pages_newest_first(
        service: ServiceProcess, page: Page) -> None:
    broken = example_job("hello")
    broken["agent_definition"]["nodes"] = []  # InvalidAgentDefinition: a failed job
    ids = [await post_job(service, job) for job in
           (example_job("hello"), broken, example_job("hello"), example_job("hello"))]
    async with httpx.AsyncClient(base_url=service.url) as client:
        for job_id in ids:
            await wait_for(lambda j=job_id: _finished(client, j), LIVE / 1000, job_id)
    await page.goto(f"{service.url}/ui?limit=3")
    rows = page.locator("#job-rows tr")
    await expect(rows).to_have_count(3)
    newest_first = list(reversed(ids))
    for index, job_id in enumerate(newest_first[:3]):
        await expect(rows.nth(index)).to_have_attribute("data-job-id", job_id)
    await expect(page.locator("#page-newer")).to_be_disabled()
    await page.locator("#page-older").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-job-id", newest_first[3])
    await expect(page.locator("#page-label")).to_have_text("page 2")
    await expect(page.locator("#page-older")).to_be_disabled()
    await page.locator("#page-newer").click()
    await expect(rows).to_have_count(3)

    await page.locator('#status-filter .chip[data-status="failed"]').click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-job-id", ids[1])
    await page.locator('#status-filter .chip[data-status="completed"]').click()
    await expect(rows).to_have_count(3)  # failed or completed, the first page of them
    await page.locator("#source-filter").select_option("nats")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#jobs-empty")).to_be_visible()


async def _finished(client: httpx.AsyncClient, job_id: str) -> bool:
    return (await client.get(f"/jobs/{job_id}")).json()["status"] in ("completed", "failed")


async def test_cancel_from_the_page_ends_the_job_cancelled(
        service: ServiceProcess, page: Page) -> None:
    job_id = await post_job(service, example_job("hello", delay_ms=120_000))
    await page.goto(f"{service.url}/ui#job={job_id}")
    await expect_status(page, "running")
    await expect(page.locator("#btn-retry")).to_be_hidden()
    await page.locator("#btn-cancel").click()

    await expect_status(page, "cancelled")
    await expect(page.locator("#outcome")).to_contain_text("Cancelled")
    await expect(page.locator("#btn-cancel")).to_be_hidden()
    await expect(page.locator("#btn-retry")).to_be_visible()
    await expect(row(page, job_id).locator(".badge")).to_have_text("cancelled")
    async with httpx.AsyncClient(base_url=service.url) as client:
        assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "cancelled"


async def test_an_api_error_is_shown_with_its_status_and_message(
        service: ServiceProcess, page: Page) -> None:
    await page.goto(f"{service.url}/ui#job=no-such-job")
    error = page.locator("#errors .error")
    await expect(error).to_contain_text("GET /jobs/no-such-job → 404")
    await expect(error).to_contain_text("no job with id 'no-such-job'")
    await expect(page.locator("#job-title")).to_have_text("no-such-job (unknown)")


async def test_an_interrupted_job_is_approved_from_the_page_and_completes(
        service: ServiceProcess, page: Page) -> None:
    job_id = await post_job(service, example_job("approval"))
    await page.goto(f"{service.url}/ui#job={job_id}")
    await expect_status(page, "interrupted")
    panel = page.locator("#interrupt")
    request = panel.locator('.request').first
    await expect(request.locator(".tool-name")).to_have_text("write_file")
    await expect(request.locator("pre.input")).to_contain_text('"file_path": "/hello.md"')
    await expect(page.locator("#files .empty")).to_be_visible()  # nothing written yet
    await request.locator('button[data-decision="approve"]').click()
    await panel.get_by_role("button", name="Send decision").click()

    await expect_status(page, "completed")
    await expect(panel).to_be_hidden()
    await expect(page.locator('.tool[data-tool="write_file"] .tool-state')).to_have_text(
        "success")
    await expect(page.locator("#files .file-content")).to_contain_text("Hello, world!")
    await expect(page.locator("#outcome")).to_contain_text("Done: /hello.md")


async def test_an_edit_from_the_page_runs_the_tool_with_the_edited_input(
        service: ServiceProcess, page: Page) -> None:
    request = await paused_request(service, page, "edit")
    editor = request.locator("textarea")
    await editor.fill('{"file_path": "/hello.md", "content": "not json')
    await send_decisions(page)
    await expect(request.locator(".problem")).to_contain_text("Not valid")
    await editor.fill('{"file_path": "/hello.md", "content": "Edited by a person\\n"}')
    await send_decisions(page)

    await expect_status(page, "completed")
    await expect(page.locator("#files .file-content")).to_have_text("Edited by a person\n")


async def test_a_reject_from_the_page_skips_the_tool_and_tells_the_agent(
        service: ServiceProcess, page: Page) -> None:
    request = await paused_request(service, page, "reject")
    await request.get_by_role("textbox").fill("no files today")
    await send_decisions(page)

    await expect_status(page, "completed")
    write = page.locator('.tool[data-tool="write_file"]')
    await expect(write.locator(".tool-state")).to_have_text("error")
    await expect(write.locator(".tool-output")).to_contain_text("no files today")
    await expect(page.locator("#files .empty")).to_be_visible()


async def test_an_interrupted_job_cancelled_then_retried_pauses_again_and_completes(
        service: ServiceProcess, page: Page) -> None:
    job_id = await post_job(service, example_job("approval"))
    await page.goto(f"{service.url}/ui#job={job_id}")
    await expect(page.locator("#interrupt")).to_be_visible(timeout=LIVE)
    await page.locator("#btn-cancel").click()
    await expect_status(page, "cancelled")
    await expect(page.locator("#interrupt")).to_be_hidden()

    await page.locator("#btn-retry").click()
    await expect(page.locator('.fact[data-fact="run"] dd')).to_have_text("2", timeout=LIVE)
    await expect(page.locator(".run-divider")).to_have_text("run 2", timeout=LIVE)
    panel = page.locator("#interrupt")
    await expect(panel).to_be_visible(timeout=LIVE)  # the retried run pauses at the tool
    await panel.locator('button[data-decision="approve"]').click()
    await panel.get_by_role("button", name="Send decision").click()
    await expect_status(page, "completed")
    await expect(page.locator("#files .file-content")).to_contain_text("Hello, world!")


async def test_with_api_tokens_the_page_asks_for_the_token_then_works(
        tmp_path: Path, page: Page) -> None:
    service = await start_service(tmp_path, API_TOKENS="first-token,console-token")
    try:
        job_id = await post_job(service, example_job("hello"), token="console-token")
        await page.goto(f"{service.url}/ui")
        dialog = page.locator("#token-dialog")
        await expect(dialog).to_be_visible()
        await expect(page.locator("#job-rows tr")).to_have_count(0)
        await dialog.locator("input").fill("wrong-token")
        await dialog.get_by_role("button", name="Use token").click()
        await expect(dialog).to_contain_text("not accepted")

        await dialog.locator("input").fill("console-token")
        await dialog.get_by_role("button", name="Use token").click()
        await expect(dialog).to_be_hidden()
        await row(page, job_id).click()
        await expect_status(page, "completed")
        await expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
        await expect(page.locator("#files .file-tab")).to_have_count(1)
        assert await page.evaluate("sessionStorage.getItem('agent-executor.token')") == \
            "console-token"

        await page.reload()  # the same tab keeps the token: no second question
        await expect(row(page, job_id)).to_be_visible()
        await expect(dialog).to_be_hidden()
        await page.get_by_role("button", name="Forget token").click()
        await expect(dialog).to_be_visible()
    finally:
        service.kill()


async def test_after_the_service_dies_mid_job_the_stream_resumes_without_gaps_or_repeats(
        tmp_path: Path, browser: Browser, page: Page) -> None:
    env = {"JOB_LEASE_SECONDS": "2"}
    service = await start_service(tmp_path, **env)
    try:
        job_id = await post_job(service, example_job("spec-builder", delay_ms=600))
        await page.goto(f"{service.url}/ui#job={job_id}")
        await expect(page.locator('.agent[data-agent="requirements-analyst"]')).to_be_visible(
            timeout=LIVE)
        service.kill()
        await expect(page.locator("#stream-state")).to_have_attribute("data-state",
                                                                      "reconnecting")
        # The same port and data: the new process takes the orphaned job over once its
        # lease ends, and the page goes on after the last seq it had (Last-Event-ID).
        service = await ServiceProcess({"AGENT_EXECUTOR_PROFILE": "local", **env},
                                       service.data_dir, port=service.port).start()
        await expect_status(page, "completed")
        await expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
        fresh = await browser.new_page()
        try:
            await fresh.goto(f"{service.url}/ui#job={job_id}")
            await expect(fresh.locator("#stream-state")).to_have_attribute("data-state",
                                                                           "ended",
                                                                           timeout=LIVE)
            assert await page.inner_text("#agents") == await fresh.inner_text("#agents")
            assert await page.inner_text("#stream-state") == \
                await fresh.inner_text("#stream-state")
        finally:
            await fresh.close()
    finally:
        service.kill()
