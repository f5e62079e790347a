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
from training.validate import DataValidationError


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
        try:
            estimator.fit(features, df[spec.schema.target])
        except ValueError as exc:
            raise refuses_missing(spec, exc) or exc from None
    return estimator


def refuses_missing(spec: ModelSpec, exc: Exception) -> DataValidationError | None:
    """The data contract's words for scikit-learn's "Input X contains NaN" where the schema has
    nullable columns: the estimator cannot take what the schema lets in (None otherwise)."""
    columns = [c for c in spec.schema.feature_columns if c.nullable]
    if not columns or "NaN" not in str(exc):
        return None
    # The predict path gives a missing number, flag or date NaN, a missing text None, which
    # scikit-learn's encoders take as a category: only the former reach an estimator as NaN
    # (all are named if none is such, as a package's own prepare may make NaN of text).
    nullable = [c.name for c in columns if c.kind != "category" or path_.numeric(c)] or [
        c.name for c in columns
    ]
    many = len(nullable) > 1
    return DataValidationError(
        [
            f"column{'s' * many} {', '.join(map(repr, nullable))} {'are' if many else 'is'} "
            f"nullable (models/{spec.name}/schema.py), but the estimator of models/{spec.name} "
            f"refuses missing values ({str(exc).splitlines()[0]}): put a SimpleImputer in its "
            "Pipeline (a text column's gaps can instead be a category of their own, as "
            "OneHotEncoder makes them), or drop the rows with gaps from the data and "
            f"nullable=True from {'those columns' if many else 'that column'}"
        ]
    )
