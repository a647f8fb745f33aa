"""GET /ui: the console's static files, how they are served, and API_TOKENS (fakes)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.http.app import create_app
from agent_executor.adapters.http.console import ASSETS
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.background import BackgroundJobs
from tests.unit.conftest import World

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "src/agent_executor/adapters/http/ui"
TOKEN = "console-token"


def build(world: World, api_tokens: tuple[str, ...] = ()) -> httpx.AsyncClient:
    app = create_app(execute=world.execute, background=BackgroundJobs(world.execute,
                                                                      world.ledger),
                     ledger=world.ledger, events=world.events, metrics=PrometheusMetrics(),
                     names=EventNames(), max_event_bytes=4096, probes=[],
                     api_tokens=api_tokens)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with build(world) as client:
        yield client


async def test_the_page_is_served_with_a_policy_that_allows_only_its_own_origin(
        client: httpx.AsyncClient) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'src="ui/app.js"' in page.text and 'href="ui/style.css"' in page.text


@pytest.mark.parametrize(("name", "kind"), [("app.js", "text/javascript"),
                                            ("job.js", "text/javascript"),
                                            ("style.css", "text/css")])
async def test_each_asset_is_served_with_its_type(client: httpx.AsyncClient, name: str,
                                                  kind: str) -> None:
    response = await client.get(f"/ui/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(kind)
    assert response.content == (UI / name).read_bytes()


@pytest.mark.parametrize("path", ["/ui/index.htm", "/ui/..%2Fapp.py", "/ui/%2e%2e",
                                  "/ui/app.js/x", "/ui/../console.py"])
async def test_only_the_listed_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404, (path, response.text)
    assert set(response.json()) == {"error", "details"}


async def test_the_page_with_a_slash_redirects_to_the_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/")
    assert response.status_code == 308 and response.headers["location"] == "/ui"


async def test_with_tokens_the_page_loads_without_one_and_the_data_does_not(
        world: World) -> None:
    async with build(world, api_tokens=(TOKEN,)) as client:
        for path in ("/ui", "/ui/", *(f"/ui/{name}" for name in ASSETS)):
            assert (await client.get(path)).status_code in (200, 308), path
        for path in ("/ui/unknown.js", "/ui/..%2Fjobs", "/jobs", "/jobs/x", "/jobs/x/events",
                     "/openapi.json"):
            assert (await client.get(path)).status_code == 401, path
        authorized = await client.get("/jobs", headers={"authorization": f"Bearer {TOKEN}"})
        assert authorized.status_code == 200


def test_every_console_file_is_in_the_wheel_and_listed() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["agent_executor"]
    files = sorted(p.name for p in UI.iterdir() if p.is_file())
    assert files == sorted(["index.html", *ASSETS])
    for name in files:
        relative = f"adapters/http/ui/{name}"
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data), relative


def test_the_page_needs_nothing_from_another_origin() -> None:
    for name in ("index.html", *ASSETS):
        text = (UI / name).read_text()
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), name
        assert "@import" not in text and "url(http" not in text, name
    scripts = "\n".join((UI / name).read_text() for name in ASSETS if name.endswith(".js"))
    # Job content reaches the page as text only, and the stream is read with fetch so
    # the bearer token can be sent (EventSource cannot send it).
    assert "innerHTML" not in scripts and "insertAdjacentHTML" not in scripts
    assert "new EventSource" not in scripts and "Last-Event-ID" in scripts
    imported = set(re.findall(r"from '\./([\w.]+)'", scripts))
    assert imported <= set(ASSETS), imported - set(ASSETS)  # every module is served
