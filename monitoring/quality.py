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


def class_probabilities(
    actual: Sequence[str], probabilities: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray] | str:
    """(the rows' probability matrix, its columns' classes in the model's order: the keys of the
    logged {class: p} objects), or why there is none to score."""
    if probabilities is None or len(probabilities) == 0:
        return "no class probabilities logged"
    missing = sum(1 for p in probabilities if not isinstance(p, Mapping))
    if missing:
        return f"{missing} of {len(probabilities)} joined rows have no class probabilities logged"
    classes = list(dict.fromkeys(str(k) for p in probabilities for k in p))
    unknown = sorted({str(a) for a in actual} - set(classes))
    if unknown:
        return (
            f"actual class {', '.join(repr(u) for u in unknown)} is not one the model predicts "
            f"({', '.join(classes)})"
        )
    matrix = np.array([[float(p.get(c, 0.0)) for c in classes] for p in probabilities])
    return matrix, np.asarray(classes)


def live_quality(
    spec: ModelSpec,
    inputs: pd.DataFrame,
    actual: Sequence[Any],
    predicted: Sequence[Any],
    probabilities: Sequence[Any] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """(the model's gate metrics on joined rows, why a metric of its task was left out). `inputs`
    are the records' features (for the model's sample weights), one row per actual;
    `probabilities` a classifier's logged {class: p} per row (ROC AUC and log loss need them)."""
    if len(actual) == 0:
        return {}, {}
    if spec.task == "regression":
        y = np.asarray(actual, dtype=float)
        y_pred = np.asarray(predicted, dtype=float)
        weights = spec.sample_weight(inputs) if spec.sample_weight is not None else None
        return regression_metrics(spec, y, y_pred, weights), {}
    y_c = np.asarray([str(v) for v in actual])
    pred_c = np.asarray([str(v) for v in predicted])
    scored = class_probabilities(list(y_c), probabilities)
    if isinstance(scored, str):
        classes = np.unique(np.concatenate([y_c, pred_c]))
        metrics = classification_metrics(y_c, pred_c, None, classes)
        return metrics, {"roc_auc": scored, "log_loss": scored}
    proba, classes = scored
    metrics = classification_metrics(y_c, pred_c, proba, classes)
    notes = {}
    if "roc_auc" not in metrics:
        seen = ", ".join(sorted(set(y_c)))
        notes["roc_auc"] = (
            f"needs actuals of every class ({', '.join(classes)}); only {seen} joined"
        )
    return metrics, notes


def live_metrics(
    spec: ModelSpec,
    inputs: pd.DataFrame,
    actual: Sequence[Any],
    predicted: Sequence[Any],
    probabilities: Sequence[Any] | None = None,
) -> dict[str, float]:
    """The model's gate metrics on joined rows (live_quality without the notes)."""
    return live_quality(spec, inputs, actual, predicted, probabilities)[0]


def by_group(spec: ModelSpec, joined: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """{group: {"rows": n, "metrics": {...}}} of joined rows (columns: `column`, actual,
    prediction, the feature columns, and `proba` where a classifier logged them)."""
    out: dict[str, dict[str, Any]] = {}
    for group, rows in joined.groupby(column, sort=True):
        proba = rows["proba"].tolist() if "proba" in rows else None
        out[str(group)] = {
            "rows": len(rows),
            "metrics": live_metrics(
                spec, rows, rows["actual"].tolist(), rows["prediction"].tolist(), proba
            ),
        }
    return out


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def check_bounds(
    metrics: Mapping[str, float],
    rows: int,
    thresholds: Sequence[Threshold],
    min_rows: int,
    unmeasured: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Each gate threshold the live metrics measure, held against the live value; one they do
    not is inconclusive, with why (`unmeasured`: metric -> reason) when known."""
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
                Finding(
                    name,
                    "inconclusive",
                    None,
                    t.text,
                    f"{t.metric} not measured live"
                    + (
                        f": {unmeasured[t.metric]}" if unmeasured and t.metric in unmeasured else ""
                    ),
                )
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
    unmeasured: Sequence[tuple[str, Mapping[str, str]]] = (),
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
        why = next((f": {u[metric]} ({n})" for n, u in unmeasured if metric in u), "")
        return Finding(
            name, "inconclusive", c, "vs previous version", f"{metric} not measured{why}"
        )
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
