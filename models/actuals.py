"""What an actual (the observed outcome of a prediction) of a model may be, from the model's record:
a regressor's is a finite number within a bound derived from the training target's range, a
classifier's one of the classes it was trained on. Checked where actuals arrive (POST /feedback,
`make feedback`) and again where they are used (`make monitor` skips and counts any stored one
that fails: a client must not be able to switch monitoring off with one bad value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.contract import Task

# A regressor's actual may lie this many spans of the training target (max - min) beyond its
# range: generous (a shift, a new record high), yet far from what would overflow a squared error.
SPAN_MULTIPLE = 10
# The bound of a regressor registered without its target range (before the range was recorded).
CAP = 10**12


@dataclass(frozen=True)
class ActualRule:
    task: Task
    low: int | None = None  # a regressor's bounds, inclusive (whole numbers: read in messages)
    high: int | None = None
    classes: tuple[str | int, ...] | None = None  # a classifier's (None: not recorded)

    def expected(self) -> str:
        if self.task == "regression":
            return f"a number from {self.low} to {self.high}"
        if self.classes is None:
            return "a class label (a string or an integer)"
        shown = ", ".join(repr(c) for c in self.classes[:5])
        return f"one of the model's classes ({shown}{', ...' if len(self.classes) > 5 else ''})"

    def problem(self, value: Any) -> str | None:
        """Why `value` (as JSON gave it) is not an actual of the model; None if it is."""
        if self.task == "regression":
            number = isinstance(value, int | float) and not isinstance(value, bool)
            try:
                ok = number and self.low <= float(value) <= self.high  # type: ignore[operator]
            except OverflowError:  # an integer no float holds
                ok = False
            return None if ok else f"expected {self.expected()}, got {_shown(value)}"
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            return f"expected {self.expected()}, got {_shown(value)}"
        if self.classes is not None and str(value) not in {str(c) for c in self.classes}:
            return f"expected {self.expected()}, got {_shown(value)}"
        return None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return f"{type(value).__name__} {value!r}"


def target_range(values: Sequence[float]) -> dict[str, float]:
    """The training target's range, recorded with a regressor (its actuals' bound derives from it)."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return {"min": min(finite), "max": max(finite)} if finite else {}


def rule(
    task: Task, classes: Sequence[Any] | None = None, target: Mapping[str, Any] | None = None
) -> ActualRule:
    """The rule of a model from its record: its task, classes and training target range."""
    if task == "classification":
        return ActualRule(task, classes=tuple(classes) if classes is not None else None)
    if not target or "min" not in target or "max" not in target:
        return ActualRule(task, low=-CAP, high=CAP)
    lo, hi = float(target["min"]), float(target["max"])
    span = (hi - lo) or max(abs(lo), abs(hi), 1.0)
    # Whole numbers, rounded outwards: the bound is read in error messages.
    low = max(math.floor(lo - SPAN_MULTIPLE * span), -CAP)
    high = min(math.ceil(hi + SPAN_MULTIPLE * span), CAP)
    return ActualRule(task, low=low, high=high)


def of_record(metadata: Mapping[str, Any]) -> ActualRule:
    """The rule of a registered model, from its metadata."""
    return rule(metadata["task"], metadata.get("classes"), metadata.get("target"))
