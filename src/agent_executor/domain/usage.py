"""What a job spent on models, and what it may spend (CONTRACT sections 2 and 6).

`Usage` is summed from the per-call entries the runtime keeps in the job's
thread state (one entry per AI message id, so a copy merged twice counts once);
`Limits` are the job's `limits` over the service's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_executor.domain.errors import BudgetExceeded

MAX_LIMIT = 10**15
LIMIT_KEYS = ("max_model_calls", "max_total_tokens")


@dataclass(frozen=True)
class Counts:
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: Counts) -> Counts:
        return Counts(self.model_calls + other.model_calls,
                      self.input_tokens + other.input_tokens,
                      self.output_tokens + other.output_tokens)

    def to_data(self) -> dict[str, int]:
        return {"model_calls": self.model_calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "total_tokens": self.total_tokens}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Counts:
        return cls(int(data.get("model_calls", 0)), int(data.get("input_tokens", 0)),
                   int(data.get("output_tokens", 0)))


@dataclass(frozen=True)
class Usage:
    """Model calls and tokens of a job, in all and by `provider:model`."""

    total: Counts = Counts()
    by_model: Mapping[str, Counts] = field(default_factory=dict)

    @classmethod
    def of_calls(cls, calls: Iterable[Mapping[str, Any]]) -> Usage:
        """Summed from call entries `{"model": "provider:model", "input_tokens",
        "output_tokens"}` (one per model call)."""
        total = Counts()
        by_model: dict[str, Counts] = {}
        for call in calls:
            one = Counts(1, _count(call.get("input_tokens")), _count(call.get("output_tokens")))
            model = str(call.get("model", "unknown"))
            total = total.plus(one)
            by_model[model] = by_model.get(model, Counts()).plus(one)
        return cls(total, by_model)

    def to_data(self) -> dict[str, Any]:
        return {**self.total.to_data(),
                "by_model": {name: c.to_data() for name, c in sorted(self.by_model.items())}}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Usage:
        return cls(Counts.from_data(data), {name: Counts.from_data(c) for name, c
                                            in (data.get("by_model") or {}).items()})

    def describe(self) -> str:
        t = self.total
        return (f"{t.model_calls} model call(s), {t.total_tokens} tokens "
                f"({t.input_tokens} input, {t.output_tokens} output)")


@dataclass(frozen=True)
class Limits:
    """A job's budget; None: no limit."""

    max_model_calls: int | None = None
    max_total_tokens: int | None = None

    def over(self, defaults: Limits) -> Limits:
        """These limits where set, else `defaults`' (a job may lower or raise them)."""
        return Limits(
            defaults.max_model_calls if self.max_model_calls is None else self.max_model_calls,
            defaults.max_total_tokens if self.max_total_tokens is None
            else self.max_total_tokens)

    def check(self, spent: Usage) -> None:
        """Raise `BudgetExceeded` when `spent` leaves no room for another model call:
        the calls reached `max_model_calls`, or the tokens `max_total_tokens`."""
        t = spent.total
        if self.max_model_calls is not None and t.model_calls >= self.max_model_calls:
            reached = f"limits.max_model_calls ({self.max_model_calls})"
        elif self.max_total_tokens is not None and t.total_tokens >= self.max_total_tokens:
            reached = f"limits.max_total_tokens ({self.max_total_tokens})"
        else:
            return
        raise BudgetExceeded(f"the job reached {reached} after {spent.describe()}; "
                             "it was stopped before its next model call")

    def to_data(self) -> dict[str, int]:
        return {k: v for k, v in (("max_model_calls", self.max_model_calls),
                                  ("max_total_tokens", self.max_total_tokens))
                if v is not None}

    @property
    def unlimited(self) -> bool:
        return self.max_model_calls is None and self.max_total_tokens is None


NO_LIMITS = Limits()


def limits_problems(value: object, where: str = "data.limits") -> list[str]:
    """Why `value` is not a `limits` object (CONTRACT section 2), as detail lines."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f"{where}: expected an object with max_model_calls and/or max_total_tokens"]
    problems: list[str] = []  # other keys are left alone, as the schema does
    for key in LIMIT_KEYS:
        n = value.get(key)
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int):
            problems.append(f"{where}.{key}: expected a whole number, got {n!r:.40}")
        elif not 1 <= n <= MAX_LIMIT:
            problems.append(f"{where}.{key}: must be from 1 to {MAX_LIMIT}, got {n}")
    return problems


def read_limits(value: object) -> Limits:
    """`limits` that `limits_problems` passed."""
    if not isinstance(value, Mapping):
        return Limits()
    return Limits(value.get("max_model_calls"), value.get("max_total_tokens"))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
