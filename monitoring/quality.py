"""Live quality, pure: the model's own gate metrics on predictions joined to their actuals, and the
checks on them. No I/O and nothing from deploy: the monitor and the router's canary analysis both
call it.

A check has three outcomes: pass, fail, or inconclusive when there are too few joined rows (a
ratio over nothing is no evidence either way; REFERENCE.md 7.3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.thresholds import Threshold
from models.contract import ModelSpec
from models.metrics import LOWER_IS_BETTER, classification_metrics, regression_metrics

Status = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Finding:
    check: str  # e.g. "gate:nwrmsle", "ratchet:nwrmsle", "drift", "rows"
    status: Status
    measured: float | None
    bound: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_metrics(
    spec: ModelSpec, inputs: pd.DataFrame, actual: Sequence[Any], predicted: Sequence[Any]
) -> dict[str, float]:
    """The model's gate metrics (training/evaluate.py's definitions) on joined rows: `inputs`
    are the records' features (for the model's sample weights), one row per actual."""
    if len(actual) == 0:
        return {}
    if spec.task == "regression":
        y = np.asarray(actual, dtype=float)
        y_pred = np.asarray(predicted, dtype=float)
        weights = spec.sample_weight(inputs) if spec.sample_weight is not None else None
        return regression_metrics(spec, y, y_pred, weights)
    y_c = np.asarray([str(v) for v in actual])
    pred_c = np.asarray([str(v) for v in predicted])
    return classification_metrics(y_c, pred_c, None, np.unique(np.concatenate([y_c, pred_c])))


def by_group(spec: ModelSpec, joined: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """{group: {"rows": n, "metrics": {...}}} of joined rows (columns: `column`, actual,
    prediction, and the feature columns)."""
    out: dict[str, dict[str, Any]] = {}
    for group, rows in joined.groupby(column, sort=True):
        out[str(group)] = {
            "rows": len(rows),
            "metrics": live_metrics(
                spec, rows, rows["actual"].tolist(), rows["prediction"].tolist()
            ),
        }
    return out


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def check_bounds(
    metrics: Mapping[str, float], rows: int, thresholds: Sequence[Threshold], min_rows: int
) -> list[Finding]:
    """Each gate threshold the live metrics measure, held against the live value."""
    findings = []
    for t in thresholds:
        value = metrics.get(t.metric)
        name = f"gate:{t.metric}"
        if rows < min_rows:
            findings.append(
                Finding(
                    name,
                    "inconclusive",
                    value,
                    t.text,
                    f"{t.metric}: {rows} joined rows, fewer than the {min_rows} needed to judge it",
                )
            )
        elif value is None or not _finite(value):
            findings.append(
                Finding(name, "inconclusive", None, t.text, f"{t.metric} not measured live")
            )
        elif t.holds(value):
            findings.append(
                Finding(
                    name, "pass", value, t.text, f"live {t.metric} = {value:.4f} meets {t.text}"
                )
            )
        else:
            findings.append(
                Finding(
                    name,
                    "fail",
                    value,
                    t.text,
                    f"live {t.metric} = {value:.4f} fails the gate's {t.text} "
                    f"over {rows} joined rows",
                )
            )
    return findings


def check_ratchet(
    metric: str,
    tolerance: float,
    current: tuple[str, int, Mapping[str, float]],
    previous: tuple[str, int, Mapping[str, float]] | None,
    min_rows: int,
) -> Finding:
    """The live version is not worse than the previous one by more than `tolerance` (the gate's
    ratchet), both judged on at least `min_rows` joined rows in the window."""
    name = f"ratchet:{metric}"
    cur_name, cur_rows, cur = current
    if previous is None:
        return Finding(
            name,
            "inconclusive",
            cur.get(metric),
            "vs previous version",
            "no previous version served in the window",
        )
    prev_name, prev_rows, prev = previous
    if min(cur_rows, prev_rows) < min_rows:
        return Finding(
            name,
            "inconclusive",
            cur.get(metric),
            "vs previous version",
            f"{cur_name} has {cur_rows} and {prev_name} {prev_rows} joined rows; "
            f"{min_rows} each are needed",
        )
    c, p = cur.get(metric), prev.get(metric)
    if not (_finite(c) and _finite(p)):
        return Finding(name, "inconclusive", c, "vs previous version", f"{metric} not measured")
    assert c is not None and p is not None
    if metric in LOWER_IS_BETTER:
        limit, ok, rel = p + tolerance, c <= p + tolerance, "<="
    else:
        limit, ok, rel = p - tolerance, c >= p - tolerance, ">="
    bound = f"{rel} {limit:.4f} ({prev_name} {p:.4f}, tolerance {tolerance:g})"
    if ok:
        return Finding(name, "pass", c, bound, f"live {metric} = {c:.4f} {bound}")
    return Finding(
        name, "fail", c, bound, f"live {metric} = {c:.4f} is worse than {prev_name}'s: not {bound}"
    )


def check_drift(
    drifted: Sequence[str], features: int, rows: int, max_share: float, min_rows: int
) -> Finding:
    """The share of drifted features stays at or below `max_share`."""
    bound = f"drifted share <= {max_share:g}"
    if rows < min_rows or features == 0:
        return Finding(
            "drift",
            "inconclusive",
            None,
            bound,
            f"{rows} live records sampled, fewer than the {min_rows} needed",
        )
    share = len(drifted) / features
    if share <= max_share:
        return Finding(
            "drift",
            "pass",
            share,
            bound,
            f"{len(drifted)} of {features} features drifted ({share:.0%})",
        )
    return Finding(
        "drift",
        "fail",
        share,
        bound,
        f"{len(drifted)} of {features} features drifted ({share:.0%} > "
        f"{max_share:.0%}): {', '.join(drifted)}",
    )
