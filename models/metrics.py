"""The quality metrics of every model, pure: numpy in, a metrics dict out.

The gate computes them on the validation split (training/evaluate.py) and monitoring on joined
actuals (monitoring/quality.py): one definition, so a live NWRMSLE means what the gate's did.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from models.contract import ModelSpec

# Which way is better, for the gate's ratchet and the monitor's.
LOWER_IS_BETTER = {"nwrmsle", "rmse", "mae", "log_loss"}


def names(spec: ModelSpec) -> tuple[str, ...]:
    """Every metric the functions below can give for `spec`'s task: what a gate may name.
    (A classifier's log_loss and roc_auc need its probabilities; roc_auc every class.)"""
    if spec.task == "regression":
        return ("rmse", "mae", "r2", *spec.extra_metrics)
    return ("accuracy", "f1_macro", "log_loss", "roc_auc")


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
        # `proba`'s columns are `classes`, in that order (the model's). log_loss needs every
        # actual among them; ROC AUC also needs every class among the actuals.
        out["log_loss"] = float(skm.log_loss(y, proba, labels=classes))
        if set(np.unique(y)) == set(classes):
            out["roc_auc"] = float(
                skm.roc_auc_score(y == classes[1], proba[:, 1])  # the column's own class
                if len(classes) == 2
                else skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            )
    return out
