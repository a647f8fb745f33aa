"""A small HTTP client of a running service, for the CLI's steering commands.

The standard library's `urllib` is enough for four JSON routes, so the CLI needs no
HTTP client dependency of its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

TIMEOUT_SECONDS = 30.0


class ServiceError(Exception):
    """The service answered with an error status (`{"error", "details"}` when JSON)."""

    def __init__(self, status: int, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)


class ServiceUnreachable(Exception):
    """No answer: nothing listens at the URL, a name that does not resolve, a timeout."""


class ServiceClient:
    def __init__(self, url: str, token: str | None = None, *,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{_quote(job_id)}")

    def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else None
        return self._call("POST", f"/jobs/{_quote(job_id)}/cancel", body)

    def resume(self, job_id: str, interrupt_id: str,
               decisions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{_quote(job_id)}/resume",
                          {"interrupt_id": interrupt_id, "decisions": list(decisions)})

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{_quote(job_id)}/retry")

    def _call(self, method: str, path: str,
              body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return _json_object(response.read())
        except urllib.error.HTTPError as exc:
            raise _service_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnreachable(f"cannot reach {self.url}: {reason}") from None
        except ValueError as exc:  # a URL urllib cannot use, or a body that is not JSON
            raise ServiceUnreachable(f"{self.url}: {exc}") from None


def _quote(job_id: str) -> str:
    return urllib.parse.quote(job_id, safe="")


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("the answer is not a JSON object")
    return value


def _service_error(status: int, raw: bytes) -> ServiceError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return ServiceError(status, body["error"],
                            [str(d) for d in details] if isinstance(details, list) else [])
    text = raw.decode("utf-8", "replace").strip()[:200]
    return ServiceError(status, f"HTTP {status}" + (f": {text}" if text else ""))
