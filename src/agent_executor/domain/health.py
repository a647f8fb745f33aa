"""Readiness of one backing service, as `/ready` shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    embedded: bool = False
    detail: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok}
        if self.embedded:
            data["embedded"] = True
        if self.detail:
            data["detail"] = self.detail
        return data
