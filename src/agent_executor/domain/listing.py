"""Listing jobs (CONTRACT section 4, `GET /jobs`): the query, the page, the cursor.

Pages are keyset pages, newest first by `(created_at, job_id)`. The cursor is
opaque to clients: base64url of a JSON pair (the last row's position as the
ledger stores it, its job_id), so each ledger keeps its own exact timestamps.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent_executor.domain.errors import InvalidRequest
from agent_executor.domain.result import JobRecord

# Every status a job can have (section 2a); `interrupted` and `cancelled` come with
# steering, and a filter on them is valid before any job has them.
JOB_STATUSES: tuple[str, ...] = ("pending", "running", "interrupted", "completed", "failed",
                                 "cancelled")
JOB_SOURCES: tuple[str, ...] = ("http", "nats", "cli")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 1024

Position = str | float
_CURSOR_PROBLEM = "cursor: not a cursor this service returned (pass next_cursor unchanged)"


@dataclass(frozen=True)
class JobQuery:
    """Which jobs, how many, after which cursor. Empty `statuses`/`sources`: any."""

    statuses: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @classmethod
    def parse(cls, *, statuses: Sequence[str] = (), sources: Sequence[str] = (),
              limit: str | None = None, cursor: str | None = None) -> JobQuery:
        """From query-string values (each may hold comma-separated items); raise
        `InvalidRequest` naming every bad parameter."""
        details: list[str] = []
        wanted_statuses = _choices("status", statuses, JOB_STATUSES, details)
        wanted_sources = _choices("source", sources, JOB_SOURCES, details)
        size = DEFAULT_LIMIT
        if limit is not None:
            text = limit.strip()
            if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
                details.append(f"limit: must be a whole number from 1 to {MAX_LIMIT}, "
                               f"got {limit[:40]!r}")
            else:
                size = int(text)
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except InvalidRequest as exc:
                details.extend(exc.details)
        if details:
            raise InvalidRequest("invalid job list query: " + "; ".join(details), details)
        return cls(wanted_statuses, wanted_sources, size, cursor or None)


@dataclass(frozen=True)
class JobPage:
    """Up to `limit` records, newest first; `next_cursor` is None on the last page."""

    records: list[JobRecord]
    next_cursor: str | None = None

    def to_data(self) -> dict[str, object]:
        """The `GET /jobs` body: each job as `GET /jobs/{id}` shows it, without the
        result, error and interrupt bodies."""
        return {"jobs": [summary(record) for record in self.records],
                "next_cursor": self.next_cursor}


SUMMARY_OMITS = frozenset({"result", "error", "interrupt"})


def summary(record: JobRecord) -> dict[str, object]:
    return {k: v for k, v in record.to_data().items() if k not in SUMMARY_OMITS}


def encode_cursor(position: Position, job_id: str) -> str:
    raw = json.dumps([position, job_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Position, str]:
    """The (position, job_id) a cursor holds; `InvalidRequest` if it is not one of ours."""
    problem = _CURSOR_PROBLEM
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidRequest("invalid cursor", [problem])
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        pair = json.loads(base64.b64decode(padded.encode("ascii"), altchars=b"-_",
                                           validate=True))
    except (UnicodeError, binascii.Error, ValueError):
        raise InvalidRequest("invalid cursor", [problem]) from None
    if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str)
            or isinstance(pair[0], bool) or not isinstance(pair[0], str | int | float)):
        raise InvalidRequest("invalid cursor", [problem])
    position = float(pair[0]) if isinstance(pair[0], int) else pair[0]
    if isinstance(position, float) and not math.isfinite(position):
        raise InvalidRequest("invalid cursor", [problem])
    return position, pair[1]


def time_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor whose position is an ISO timestamp with its zone (`encode_cursor(
    created_at.isoformat(), job_id)`), as a ledger keeping `datetime`s writes it."""
    position, job_id = decode_cursor(cursor)
    if isinstance(position, str):
        try:
            at = datetime.fromisoformat(position)
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            return at, job_id
    raise InvalidRequest("invalid cursor", [_CURSOR_PROBLEM])


def number_cursor(cursor: str) -> tuple[float, str]:
    """A cursor whose position is a number (a ledger keeping epoch seconds)."""
    position, job_id = decode_cursor(cursor)
    if isinstance(position, float):
        return position, job_id
    raise InvalidRequest("invalid cursor", [_CURSOR_PROBLEM])


def _choices(name: str, values: Sequence[str], allowed: tuple[str, ...],
             details: list[str]) -> frozenset[str]:
    chosen = {item.strip() for value in values for item in value.split(",") if item.strip()}
    unknown = sorted(chosen - set(allowed))
    if unknown:
        details.append(f"{name}: {', '.join(repr(u[:40]) for u in unknown)} not one of "
                       + ", ".join(allowed))
    return frozenset(chosen & set(allowed))
