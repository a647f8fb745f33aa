"""Who may call the HTTP API: bearer tokens (API_TOKENS) and browsers on other
origins (CORS_ALLOW_ORIGINS), CONTRACT sections 1 and 4.

Both wrap the whole app, so a route added later is covered without a word.
CORS sits outside the token check: a preflight is answered without a token,
and a 401 still carries the CORS headers a browser needs to read it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

# Probes and scrapers carry no token (CONTRACT section 1).
OPEN_PATHS: frozenset[str] = frozenset({"/health", "/ready", "/metrics"})
CORS_ALLOW_HEADERS: tuple[str, ...] = (
    "Authorization", "Content-Type", "Last-Event-ID", "Prefer", "traceparent", "tracestate",
    # CloudEvents binary mode: the attributes as ce- headers
    "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time",
    "ce-dataschema", "ce-traceparent", "ce-tracestate",
)
CORS_EXPOSE_HEADERS: tuple[str, ...] = ("Location", "Preference-Applied", "Retry-After",
                                        "WWW-Authenticate")
CORS_METHODS: tuple[str, ...] = ("GET", "POST", "OPTIONS")


def access_middleware(*, cors_allow_origins: Collection[str], api_tokens: Collection[str],
                      routes: Sequence[BaseRoute],
                      open_paths: Collection[str] = OPEN_PATHS) -> list[Middleware]:
    """The middleware, outermost first: none when neither variable is set."""
    layers: list[Middleware] = []
    if cors_allow_origins:
        layers.append(Middleware(CORSMiddleware, allow_origins=list(cors_allow_origins),
                                 allow_methods=list(CORS_METHODS),
                                 allow_headers=list(CORS_ALLOW_HEADERS),
                                 expose_headers=list(CORS_EXPOSE_HEADERS), max_age=600))
    if api_tokens:
        layers.append(Middleware(BearerTokens, tokens=tuple(api_tokens), routes=routes,
                                 open_paths=frozenset(open_paths)))
    return layers


class BearerTokens:
    """`Authorization: Bearer <one of tokens>` on every path but `open_paths`, else a
    401 JSON error with `WWW-Authenticate: Bearer`. CORS preflights never get here:
    the CORS middleware outside answers them."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], routes: Sequence[BaseRoute],
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        if not tokens:
            raise ValueError("BearerTokens needs at least one token")
        self.app = app
        self._tokens = tuple(t.encode() for t in tokens)
        self._routes = routes
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and self.accepts(given):
            await self.app(scope, receive, send)
            return
        self._name_route(scope)
        challenge = 'Bearer realm="agent-executor"'
        if given is not None:
            challenge += ', error="invalid_token"'
        body = json.dumps({"error": "a valid bearer token is required (API_TOKENS)",
                           "details": ["Authorization: " + ("token not accepted"
                                                            if given is not None else
                                                            "missing; send 'Bearer <token>'")]
                           }).encode()
        # The request's body is left unread, so the connection cannot carry another
        # request: say so, or a client reusing it (to retry with the token) races its close.
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", challenge.encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def accepts(self, given: bytes) -> bool:
        """Constant time over every token: no early exit tells which one came close."""
        accepted = False
        for token in self._tokens:
            accepted |= hmac.compare_digest(given, token)
        return accepted

    def _name_route(self, scope: Scope) -> None:
        """Let the request metrics label a refused request with its route template."""
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                scope["route"] = route
                return


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = bytes(value).partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None
