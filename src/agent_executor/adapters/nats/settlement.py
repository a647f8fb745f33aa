"""How a job message is settled when it did not end with a published result.

One table, pure, so the rules of CONTRACT section 5 can be read and tested
apart from NATS:

| error                         | before the last delivery | on the last delivery              |
| ----------------------------- | ------------------------ | --------------------------------- |
| InvalidJob                    | term, after a `{prefix}.rejected` event (never a job's result) |
| JobMismatch                   | term: the job_id names another job; no result (its own stands) |
| JobConflict, LeaseLost        | nak, growing delay       | ack: the job runs elsewhere and   |
|                               |                          | ends with its own result          |
| DependencyUnavailable, other  | nak, growing delay       | give up: the use case records a   |
|                               |                          | `failed` result, publishes it, term |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent_executor.domain.errors import (
    DependencyUnavailable,
    InvalidJob,
    JobConflict,
    JobMismatch,
    LeaseLost,
)
from agent_executor.domain.result import ErrorInfo


@dataclass(frozen=True)
class RetryPolicy:
    """nak delays: `base * factor**(delivered - 1)` seconds, at most `cap`."""

    base_seconds: float = 5.0
    factor: float = 3.0
    cap_seconds: float = 300.0
    # A copy of a job that runs elsewhere is looked at again soon: when the job ends,
    # this copy publishes its result again within the status stream's duplicate
    # window (120 s) instead of minutes later, when it would be stored twice.
    elsewhere_cap_seconds: float = 15.0

    def delay(self, num_delivered: int) -> float:
        exponent = max(0, num_delivered - 1)
        if self.factor > 1 and exponent > 64:  # far past the cap; avoid a float overflow
            return self.cap_seconds
        return float(min(self.cap_seconds, self.base_seconds * self.factor ** exponent))


@dataclass(frozen=True)
class Settlement:
    action: Literal["ack", "nak", "term"]
    delay: float | None = None
    give_up: ErrorInfo | None = None  # the use case ends the job `failed` with this first
    reject: bool = False  # a `{prefix}.rejected` event goes out first
    outcome: str = ""  # for the log line


def settle(error: BaseException, num_delivered: int, max_deliver: int,
           policy: RetryPolicy) -> Settlement:
    """The settlement of a message whose handling raised `error`."""
    last = max_deliver > 0 and num_delivered >= max_deliver
    if isinstance(error, InvalidJob):
        return Settlement("term", reject=True, outcome="not a valid job")
    if isinstance(error, JobMismatch):
        return Settlement("term", outcome="job_id known with another definition or input")
    if isinstance(error, JobConflict | LeaseLost):
        if last:
            return Settlement("ack", outcome="running elsewhere; this duplicate is dropped")
        return Settlement("nak", min(policy.delay(num_delivered), policy.elsewhere_cap_seconds),
                          outcome="running elsewhere")
    if last:
        kind = "DependencyUnavailable" if isinstance(error, DependencyUnavailable) \
            else "InternalError"
        message = (f"gave up after {num_delivered} deliveries: {kind}: {error}"
                   if str(error) else f"gave up after {num_delivered} deliveries: {kind}")
        return Settlement("term", give_up=ErrorInfo(kind, message, retryable=True),
                          outcome="last delivery failed")
    return Settlement("nak", policy.delay(num_delivered), outcome="will be retried")
