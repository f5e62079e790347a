"""Metric functions: pure, numpy in, float out."""

from __future__ import annotations

import numpy as np


def nwrmsle(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Normalized weighted root mean squared logarithmic error (the Favorita metric).

    sqrt(sum(w * (ln(pred + 1) - ln(true + 1))^2) / sum(w)); perishables weigh 1.25.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.clip(np.asarray(y_pred, dtype=float), 0, None)
    w = np.ones_like(y_true) if weights is None else np.asarray(weights, dtype=float)
    err = (np.log1p(y_pred) - np.log1p(np.clip(y_true, 0, None))) ** 2
    return float(np.sqrt(np.sum(w * err) / np.sum(w)))
