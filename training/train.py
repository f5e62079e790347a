"""Train stage: fit the model package's estimator on the training split.

The estimator is fitted on `prepare(records)`, the model input the predict path builds from
request records, so training and serving cannot disagree on features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from models import predict as path_
from models.contract import ModelSpec
from training import parameters


def train(
    spec: ModelSpec,
    df: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
    config_path: Path | None = None,
) -> Any:
    """The fitted estimator. Given the `config_path` the params come from, a failure is explained
    (training/parameters.py): a parameter by its line there, a model input the estimator refuses
    by the package's prepare or estimator, never by the params."""

    @contextlib.contextmanager
    def explained(features: Any = None) -> Iterator[None]:
        if config_path is None:
            yield
            return
        with parameters.explained(spec, params, config_path, features=features):
            yield

    with explained():
        estimator = spec.build_estimator(params, seed)
    features = path_.prepare(spec, spec.schema.records(df))
    with explained(features):
        estimator.fit(features, df[spec.schema.target])
    return estimator
