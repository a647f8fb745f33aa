"""The one place a model provider's failure becomes a `ModelError` (CONTRACT section 6).

A table in the style of httpx's `map_httpcore_exceptions`, most specific first:
an HTTP status decides when the SDK error carries one (429, 408, 409 and 5xx are
transient; 401, 403, 400, 404, 422 and the other 4xx are not), else the class
does (timeouts and lost connections are transient). The drivers: the openai and
anthropic SDKs (over httpx2; langchain re-raises their errors as subclasses that
are also `langchain_core.exceptions.ModelError`s), ollama (over httpx, which
turns a refused connection into the builtin `ConnectionError`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from agent_executor.domain.errors import ModelError

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})

Rule = tuple[type[BaseException], Callable[[BaseException], bool]]


def retryable_status(status: int) -> bool:
    """Transient: rate limited, timed out, conflicting, any 5xx, and an error event inside
    a stream that had started with 2xx (the provider broke off mid-answer)."""
    return status in TRANSIENT_STATUS or status >= 500 or 0 <= status < 400


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 0:
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _by_status(exc: BaseException) -> bool:
    status = status_of(exc)
    return status is not None and retryable_status(status)


def _always(exc: BaseException) -> bool:
    return True


def _never(exc: BaseException) -> bool:
    return False


def _declared(exc: BaseException) -> bool:
    return bool(getattr(exc, "is_retryable", False))


@functools.cache
def _rules() -> tuple[Rule, ...]:
    """Imported on first use, so start-up does not pay for the SDKs."""
    import anthropic
    import httpx
    import httpx2
    import langchain_core.exceptions
    import ollama
    import openai

    return (
        # An HTTP answer: its status decides.
        (openai.APIStatusError, _by_status),
        (openai.APIResponseValidationError, _never),
        (anthropic.APIStatusError, _by_status),
        (anthropic.APIResponseValidationError, _never),
        (ollama.ResponseError, _by_status),
        (httpx.HTTPStatusError, _by_status),
        (httpx2.HTTPStatusError, _by_status),
        # No answer: timed out, refused, reset, cut off mid-stream.
        (openai.APIConnectionError, _always),  # APITimeoutError is one
        (anthropic.APIConnectionError, _always),
        (anthropic.RetryableError, _always),
        (httpx.TransportError, _always),
        (httpx2.TransportError, _always),
        (TimeoutError, _always),
        (ConnectionError, _always),
        # langchain's provider-neutral tree (the integrations raise subclasses of it
        # that are also the SDK's classes, caught above by their status).
        (langchain_core.exceptions.ModelError, _declared),
        # An error event inside a stream that had started well: the provider broke off.
        (openai.APIError, _always),
        (anthropic.APIError, _always),
        # Refused before or after sending: a bad request the provider explained
        # (finish reasons, content filters, credentials it could not load).
        (openai.OpenAIError, _never),
        (anthropic.AnthropicError, _never),
        (ollama.RequestError, _never),
    )


def describe(exc: BaseException) -> str:
    """`HTTP 429`, or the class when there was no answer (`APITimeoutError`)."""
    status = status_of(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def classify(exc: BaseException) -> ModelError | None:
    """The `ModelError` for a provider failure, or None when `exc` is not one."""
    for cls, retryable in _rules():
        if isinstance(exc, cls):
            return ModelError(f"model provider failed ({describe(exc)}): "
                              f"{type(exc).__name__}: {exc}", retryable=retryable(exc))
    return None
