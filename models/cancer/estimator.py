"""cancer estimator: standardised measurements and a logistic regression, or gradient-boosted
trees (`params.estimator: hist_gradient_boosting`); both convert to ONNX exactly enough to serve
through ONNX Runtime (see `make models`)."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_estimator(params: dict[str, Any], seed: int) -> Pipeline:
    params = dict(params)
    kind = params.pop("estimator", "logistic_regression")
    if kind == "logistic_regression":
        return Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", LogisticRegression(random_state=seed, **params)),
            ]
        )
    if kind == "hist_gradient_boosting":
        return Pipeline([("model", HistGradientBoostingClassifier(random_state=seed, **params))])
    raise ValueError(
        f"params.estimator: {kind!r} is not one of logistic_regression, hist_gradient_boosting"
    )
