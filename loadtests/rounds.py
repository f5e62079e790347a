"""The load-test verdict on a shared, busy machine: figures over rounds, a near miss measured again.

The same model's P90 read 73.8, 45.6, 120.2 and 47.1 ms in four runs within 5 minutes on a busy
runner: a neighbour's burst slows part of a run, and a single run's P90 says so. Two answers:
- each target runs several short rounds (each with its own warm-up, not counted) and the gate
  reads each latency figure and the throughput of the median round: one disturbed round moves
  the median little. Errors are pooled over every round: a failed request counts whenever it came.
- a failure whose every miss is within `confirm_within` of its bound (relative) is measured once
  more, all rounds; the gate fails only if that re-run fails too. A farther miss is the model's
  and fails at once, so a model that is really too slow costs no second run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import TypeVar

from core.verdict import GateResult

Attempt = TypeVar("Attempt")
LATENCIES = ("p50", "p90", "p99")


def combine(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Pure: one target's figures over its rounds. P50/P90/P99 and req/s: each the median of its
    rounds' values, taken per figure (rounds without a sample have no percentiles and are left out); requests and the error rate: pooled."""
    measured = [r for r in rounds if r["requests"] > 0]
    requests = sum(r["requests"] for r in rounds)
    errors = sum(r["error_rate"] * r["requests"] for r in rounds)

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in measured)) if measured else math.nan

    return {
        "requests": requests,
        "rps": median("rps") if measured else 0.0,
        "error_rate": errors / requests if requests else 1.0,
        **{key: median(key) for key in LATENCIES},
    }


def relative_miss(value: float, limit: float, lower_is_better: bool) -> float:
    """Pure: how far `value` is past `limit`, as a share of the limit (0.2: 20% past); a zero limit
    (no error allowed) is missed by infinitely much: never a near miss."""
    past = value - limit if lower_is_better else limit - value
    return past / abs(limit) if limit else math.inf


def confirmed(
    measure: Callable[[int], Attempt],
    judge: Callable[[Attempt], tuple[GateResult, dict[str, float]]],
    within: float,
) -> tuple[GateResult, list[Attempt]]:
    """The verdict, with one confirmatory re-run of a near miss. `measure(n)` runs attempt n;
    `judge` gives its verdict and each failed check's relative miss. A failure whose misses are
    all at most `within` is measured again and the re-run's verdict stands; otherwise the first."""
    attempts = [measure(1)]
    result, misses = judge(attempts[0])
    if not result.accepted and misses and all(m <= within for m in misses.values()):  # NaN: no
        attempts.append(measure(2))
        result, _ = judge(attempts[1])
    return result, attempts
