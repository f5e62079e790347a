"""Evaluate stage: metrics of a fitted model on the validation split, overall and per group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models import predict as path_
from models.contract import ModelSpec
from models.metrics import LOWER_IS_BETTER, classification_metrics, regression_metrics

__all__ = ["LOWER_IS_BETTER", "classification_metrics", "evaluate", "regression_metrics"]


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
