"""`GET /ui`: the console, static files shipped inside the package (`ui/`).

The page holds no job data: it loads without a token (a browser opening a URL
cannot send `Authorization`) and asks for one when an API call answers `401`
(docs/security.md). Only the files listed here are served, from memory, with a
Content-Security-Policy that lets the page talk to its own origin and nothing else.
"""

from __future__ import annotations

import functools
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

CONSOLE_PATH = "/ui"
_SCRIPT = "text/javascript; charset=utf-8"
ASSETS: dict[str, str] = {
    **{name: _SCRIPT for name in ("app.js", "api.js", "interrupt.js", "job.js", "sse.js",
                                  "util.js", "views.js")},
    "style.css": "text/css; charset=utf-8",
}
# What BearerTokens lets through without a token: the page and its assets only.
CONSOLE_PATHS: frozenset[str] = frozenset(
    {CONSOLE_PATH, CONSOLE_PATH + "/", *(f"{CONSOLE_PATH}/{name}" for name in ASSETS)})
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _file(name: str) -> bytes:
    return resources.files("agent_executor").joinpath("adapters", "http", "ui",
                                                       name).read_bytes()


async def _page(_: Request) -> Response:
    return Response(_file("index.html"), media_type="text/html; charset=utf-8",
                    headers=SECURITY_HEADERS)


async def _slash(_: Request) -> Response:
    # The page's links are relative to /ui (assets at ui/..., the API at ./).
    return RedirectResponse(CONSOLE_PATH, status_code=308)


async def _asset(request: Request) -> Response:
    name = request.path_params["asset"]
    if name not in ASSETS:
        raise HTTPException(404, f"no console file {name!r}")
    return Response(_file(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


def console_routes() -> list[Route]:
    return [Route(CONSOLE_PATH, _page, methods=["GET"]),
            Route(CONSOLE_PATH + "/", _slash, methods=["GET"]),
            Route(CONSOLE_PATH + "/{asset}", _asset, methods=["GET"])]
