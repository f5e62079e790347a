"""Evaluate stage: metrics of a fitted model on the validation split, overall and per group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from models import predict as path_
from models.contract import ModelSpec

# Which way is better, for the gate's ratchet.
LOWER_IS_BETTER = {"nwrmsle", "rmse", "mae", "log_loss"}


def regression_metrics(
    spec: ModelSpec, y: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None
) -> dict[str, float]:
    out = {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, y_pred))),
        "mae": float(skm.mean_absolute_error(y, y_pred)),
        "r2": float(skm.r2_score(y, y_pred)) if len(y) > 1 else float("nan"),
    }
    for name, fn in spec.extra_metrics.items():
        out[name] = float(fn(y, y_pred, weights))
    return out


def classification_metrics(
    y: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
) -> dict[str, float]:
    out = {
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "f1_macro": float(skm.f1_score(y, y_pred, average="macro")),
    }
    if proba is not None:
        out["log_loss"] = float(skm.log_loss(y, proba, labels=classes))
        if len(np.unique(y)) == len(classes):
            out["roc_auc"] = float(
                skm.roc_auc_score(y, proba[:, 1])
                if len(classes) == 2
                else skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            )
    return out


def evaluate(spec: ModelSpec, model: Any, df: pd.DataFrame) -> dict[str, Any]:
    """Return {"rows": n, "overall": {metric: value}, "by_<column>": {group: {metric: value}}}.

    Predictions come from the package's predict path on the rows as request records: what is
    evaluated and gated is what the service will answer."""
    out = path_.predict_records(spec, model, spec.schema.records(df))
    y = df[spec.schema.target].to_numpy()
    y_pred = np.asarray(out.predictions)
    if spec.task == "regression":
        y = y.astype(float)
        w = spec.sample_weight(df) if spec.sample_weight else None

        def score(m: np.ndarray) -> dict[str, float]:
            return regression_metrics(spec, y[m], y_pred[m], None if w is None else w[m])
    else:
        proba = out.probabilities

        def score(m: np.ndarray) -> dict[str, float]:
            return classification_metrics(
                y[m], y_pred[m], None if proba is None else proba[m], model.classes_
            )

    report: dict[str, Any] = {"rows": len(df), "overall": score(np.ones(len(df), dtype=bool))}
    for column in spec.group_by:
        values = df[column].to_numpy()
        report[f"by_{column}"] = {str(g): score(values == g) for g in sorted(pd.unique(values))}
    return report
