"""Thresholds in a k6-like form, shared by the quality gate and the load-test gate.

"nwrmsle <= 0.80", "p90 < 50ms", "error_rate < 0.1%", "rps > 100". Units: ms and s (as
milliseconds), % (as a fraction); a bare number is taken as it is.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0, "%": 0.01}
_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)?\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?\s*$"
)


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float  # in base units: milliseconds, fractions
    text: str  # as written, for messages
    source: str = ""  # where it is set ("file:line"), for a failure's message

    def holds(self, measured: float) -> bool:
        return OPS[self.op](measured, self.value)

    @property
    def lower_is_better(self) -> bool:
        return self.op in ("<", "<=")


def parse(text: str, metric: str | None = None) -> Threshold:
    """Parse "p90 < 50ms"; with `metric` given, the text may be just the bound ("<= 0.80")."""
    m = _RE.match(text)
    if not m:
        raise ThresholdError(
            f"cannot read threshold {text!r}: expected '<metric> <op> <number>[ms|s|%]', "
            "e.g. 'p90 < 50ms'"
        )
    name = m["metric"] or metric
    if name is None:
        raise ThresholdError(f"threshold {text!r} names no metric")
    if metric is not None and m["metric"] and m["metric"] != metric:
        raise ThresholdError(f"threshold {text!r} is listed under {metric!r}")
    value = float(m["value"]) * UNITS[m["unit"] or ""]
    return Threshold(
        metric=name, op=m["op"], value=value, text=f"{name} {m['op']} {m['value']}{m['unit'] or ''}"
    )


def parse_many(text: str) -> list[Threshold]:
    """Parse a comma-separated list, as given on a command line."""
    return [parse(part) for part in text.split(",") if part.strip()]
