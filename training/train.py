"""Train stage: fit the model package's estimator on the training split.

The estimator is fitted on `prepare(records)`, the model input the predict path builds from
request records, so training and serving cannot disagree on features.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from models import predict as path_
from models.contract import ModelSpec


def train(spec: ModelSpec, df: pd.DataFrame, params: dict[str, Any], seed: int) -> Any:
    estimator = spec.build_estimator(params, seed)
    features = path_.prepare(spec, spec.schema.records(df))
    estimator.fit(features, df[spec.schema.target])
    return estimator
