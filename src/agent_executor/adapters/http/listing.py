"""`GET /jobs`'s query string to a `JobQuery` (CONTRACT section 4)."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from agent_executor.domain.errors import InvalidRequest
from agent_executor.domain.listing import JobQuery

REPEATABLE = ("status", "source")
SINGLE = ("limit", "cursor")


def job_query(params: QueryParams) -> JobQuery:
    """Raise `InvalidRequest` naming every unknown, repeated or bad parameter."""
    details = [f"{name}: unknown parameter (expected {', '.join(REPEATABLE + SINGLE)})"
               for name in sorted(set(params) - set(REPEATABLE + SINGLE))]
    details += [f"{name}: given {len(params.getlist(name))} times, at most once"
                for name in SINGLE if len(params.getlist(name)) > 1]
    if details:
        raise InvalidRequest("invalid job list query: " + "; ".join(details), details)
    return JobQuery.parse(statuses=params.getlist("status"), sources=params.getlist("source"),
                          limit=params.get("limit"), cursor=params.get("cursor"))
