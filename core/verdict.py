"""Verdict types both gates (quality and load test) return: each check, and the decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    measured: float | None
    bound: str
    passed: bool
    message: str


@dataclass(frozen=True)
class GateResult:
    accepted: bool
    checks: tuple[Check, ...]

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        return cls(bool(data["accepted"]), tuple(Check(**c) for c in data["checks"]))
