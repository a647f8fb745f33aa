"""How NATS job messages are settled when they did not end with a result."""

from __future__ import annotations

import pytest

from agent_executor.adapters.nats.settlement import RetryPolicy, settle
from agent_executor.domain.errors import (
    DependencyUnavailable,
    InvalidJob,
    JobConflict,
    LeaseLost,
)

POLICY = RetryPolicy(base_seconds=5, factor=3, cap_seconds=300)


def test_nak_delay_grows_with_each_delivery_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in range(1, 7)] == [5, 15, 45, 135, 300, 300]
    assert POLICY.delay(0) == 5
    assert POLICY.delay(10_000) == 300


def test_invalid_job_is_rejected_and_terminated_never_failed() -> None:
    decision = settle(InvalidJob("bad envelope", ["type: wrong"]), 1, 5, POLICY)
    assert (decision.action, decision.reject, decision.give_up) == ("term", True, None)


@pytest.mark.parametrize("error", [DependencyUnavailable("postgres down"), RuntimeError("bug")])
def test_own_failures_are_retried_with_growing_delays(error: Exception) -> None:
    first, third = settle(error, 1, 5, POLICY), settle(error, 3, 5, POLICY)
    assert (first.action, first.delay, first.give_up) == ("nak", 5, None)
    assert (third.action, third.delay) == ("nak", 45)


def test_the_last_delivery_gives_up_with_a_retryable_failure_and_terminates() -> None:
    decision = settle(DependencyUnavailable("postgres down"), 5, 5, POLICY)
    assert decision.action == "term"
    assert decision.give_up is not None
    assert decision.give_up.type == "DependencyUnavailable"
    assert decision.give_up.retryable is True
    assert "postgres down" in decision.give_up.message
    assert settle(RuntimeError(), 6, 5, POLICY).give_up is not None


@pytest.mark.parametrize("error", [JobConflict("elsewhere"), LeaseLost("taken over")])
def test_a_job_running_elsewhere_is_retried_then_dropped_without_a_result(
        error: Exception) -> None:
    assert settle(error, 2, 5, POLICY).action == "nak"
    # looked at again soon, so that its result is republished inside the duplicate window
    assert settle(error, 4, 5, POLICY).delay == POLICY.elsewhere_cap_seconds < POLICY.delay(4)
    last = settle(error, 5, 5, POLICY)
    assert (last.action, last.give_up) == ("ack", None)


def test_unlimited_deliveries_never_give_up() -> None:
    assert settle(DependencyUnavailable("x"), 100, -1, POLICY).action == "nak"
