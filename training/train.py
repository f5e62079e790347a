"""Train stage: fit the model package's estimator on the training split."""

from __future__ import annotations

from typing import Any

import pandas as pd

from models.contract import ModelSpec


def train(spec: ModelSpec, df: pd.DataFrame, params: dict[str, Any], seed: int) -> Any:
    estimator = spec.build_estimator(params, seed)
    schema = spec.schema
    estimator.fit(df[list(schema.features)], df[schema.target])
    return estimator
