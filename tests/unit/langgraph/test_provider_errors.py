"""The one table that classifies provider failures (CONTRACT section 6)."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import httpx
import httpx2
import langchain_core.exceptions as lc
import ollama
import openai
import pytest

from agent_executor.adapters.langgraph.provider_errors import classify

REQUEST = httpx2.Request("POST", "http://provider.test/v1/chat/completions")


def response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=REQUEST, headers={"retry-after": "1"})


def openai_status(cls: type[openai.APIStatusError], status: int) -> Callable[[], Exception]:
    return lambda: cls(f"Error code: {status}", response=response(status), body=None)


def anthropic_status(cls: type[anthropic.APIStatusError],
                     status: int) -> Callable[[], Exception]:
    return lambda: cls(f"Error code: {status}", response=response(status), body=None)


CASES: list[tuple[str, Callable[[], Exception], bool]] = [
    ("openai 429", openai_status(openai.RateLimitError, 429), True),
    ("openai 500", openai_status(openai.InternalServerError, 500), True),
    ("openai 503 generic", openai_status(openai.APIStatusError, 503), True),
    ("openai 408", openai_status(openai.APIStatusError, 408), True),
    ("openai timeout", lambda: openai.APITimeoutError(request=REQUEST), True),
    ("openai connection", lambda: openai.APIConnectionError(request=REQUEST), True),
    ("openai error event mid-stream",
     lambda: openai.APIError("server_error", REQUEST, body={"message": "boom"}), True),
    ("openai 401", openai_status(openai.AuthenticationError, 401), False),
    ("openai 403", openai_status(openai.PermissionDeniedError, 403), False),
    ("openai 400", openai_status(openai.BadRequestError, 400), False),
    ("openai 404 unknown model", openai_status(openai.NotFoundError, 404), False),
    ("openai 422", openai_status(openai.UnprocessableEntityError, 422), False),
    ("anthropic 429", anthropic_status(anthropic.RateLimitError, 429), True),
    ("anthropic 529 overloaded", anthropic_status(anthropic.OverloadedError, 529), True),
    ("anthropic 500", anthropic_status(anthropic.InternalServerError, 500), True),
    ("anthropic timeout", lambda: anthropic.APITimeoutError(request=REQUEST), True),
    ("anthropic connection", lambda: anthropic.APIConnectionError(request=REQUEST), True),
    ("anthropic 401", anthropic_status(anthropic.AuthenticationError, 401), False),
    ("anthropic 400", anthropic_status(anthropic.BadRequestError, 400), False),
    ("anthropic 404", anthropic_status(anthropic.NotFoundError, 404), False),
    ("ollama 500", lambda: ollama.ResponseError("boom", 500), True),
    ("ollama 404 unknown model", lambda: ollama.ResponseError("model not found", 404), False),
    ("ollama refused (builtin ConnectionError)", lambda: ConnectionError("refused"), True),
    ("httpx read timeout", lambda: httpx.ReadTimeout("slow"), True),
    ("httpx connection lost", lambda: httpx.RemoteProtocolError("peer closed"), True),
    ("httpx connect", lambda: httpx.ConnectError("refused"), True),
    ("httpx2 read timeout", lambda: httpx2.ReadTimeout("slow"), True),
    ("asyncio timeout", lambda: TimeoutError(), True),
    ("langchain rate limit", lambda: lc.ModelRateLimitError("slow down"), True),
    ("langchain connection", lambda: lc.ModelConnectionError("gone"), True),
    ("langchain context overflow", lambda: lc.ContextOverflowError("too long"), False),
    ("langchain auth", lambda: lc.ModelAuthenticationError("bad key"), False),
]


@pytest.mark.parametrize(("make", "retryable"), [(m, r) for _, m, r in CASES],
                         ids=[name for name, _, _ in CASES])
def test_each_provider_failure_has_one_verdict(make: Callable[[], Exception],
                                               retryable: bool) -> None:
    error = classify(make())
    assert error is not None
    assert error.retryable is retryable
    assert error.message.startswith("model provider failed")


def test_the_status_is_named_in_the_message() -> None:
    error = classify(openai_status(openai.InternalServerError, 502)())
    assert error is not None and "HTTP 502" in error.message


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("tool_call_id"), RuntimeError()])
def test_anything_else_is_not_a_provider_failure(exc: Exception) -> None:
    assert classify(exc) is None
