"""The contract between a model package and the platform.

A model package (``models/<name>/__init__.py``) exposes ``SPEC: ModelSpec``. The training pipeline,
the service and the load test read everything model-specific from it, so adding a model never
touches platform code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:  # imported where used: the serving supervisor reads schemas, never data
    import numpy as np
    import pandas as pd

Kind = Literal["int", "float", "bool", "category", "date"]
Task = Literal["regression", "classification"]


class Column(BaseModel):
    """One column of the data contract; feature columns also become request fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Kind
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    # Allowed values of a category column. None on a feature column means "learn them from the
    # training data": the fitted schema stored with the model then lists them.
    categories: tuple[str | int, ...] | None = None
    example: Any = None
    # A feature column whose values may be missing: null in a request, an empty cell in a file.
    # The model must then handle them (HistGradientBoosting does natively; else an imputer).
    nullable: bool = False

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Column:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"column {self.name!r}: minimum {self.minimum} > maximum {self.maximum}"
            )
        return self


class FeatureSchema(BaseModel):
    """The data contract: all columns of a dataset, which of them are features, and the target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: tuple[Column, ...]
    features: tuple[str, ...]
    target: str
    time_column: str | None = None  # set for time series: the split is then by time, never random

    @model_validator(mode="after")
    def _names_resolve(self) -> FeatureSchema:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        missing = [n for n in (*self.features, self.target) if n not in names]
        if missing:
            raise ValueError(f"features/target not among the columns: {missing}")
        if self.time_column is not None and self.time_column not in names:
            raise ValueError(f"time_column {self.time_column!r} is not a column")
        for name in (self.target, self.time_column):
            if name is not None and self.column(name).nullable:
                raise ValueError(f"column {name!r}: the target and time column cannot be nullable")
        return self

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def feature_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.features)

    def fitted(self, data: pd.DataFrame) -> FeatureSchema:
        """Fill in categories learned from the training data, so serving can reject unknown ones."""
        cols = []
        for c in self.columns:
            if c.kind == "category" and c.categories is None and c.name in self.features:
                learned = sorted(data[c.name].dropna().unique().tolist())
                c = c.model_copy(update={"categories": tuple(learned)})
            cols.append(c)
        return self.model_copy(update={"columns": tuple(cols)})

    def records(self, df: pd.DataFrame) -> list[dict[str, Any]]:
        """Rows as request records: feature columns only, plain JSON types, ISO dates."""
        rows: list[dict[str, Any]] = json.loads(
            df[list(self.features)].to_json(orient="records", date_format="iso")
        )
        dates = [c.name for c in self.feature_columns if c.kind == "date"]
        # A whole-number column with gaps is float in a frame; its records hold integers.
        whole = [c.name for c in self.feature_columns if c.nullable and _whole_numbers(c)]
        for row in rows:
            for name in dates:
                row[name] = None if row[name] is None else str(row[name])[:10]
            for name in whole:
                if isinstance(row[name], float) and row[name].is_integer():
                    row[name] = int(row[name])
        return rows

    def example_record(self) -> dict[str, Any]:
        """A valid request record, from each feature's example or its first category."""
        rec: dict[str, Any] = {}
        for c in self.feature_columns:
            if c.example is not None:
                rec[c.name] = c.example
            elif c.categories:
                rec[c.name] = c.categories[0]
            elif c.kind == "bool":
                rec[c.name] = False
            elif c.kind == "date":
                rec[c.name] = "2017-08-01"
            else:
                lo = c.minimum if c.minimum is not None else 0
                rec[c.name] = int(lo) if c.kind == "int" else float(lo)
        return rec


def _whole_numbers(col: Column) -> bool:
    """An int column, or a category column whose categories are integers."""
    first = (col.categories or ("",))[0]
    return col.kind == "int" or (col.kind == "category" and isinstance(first, int))


@dataclass(frozen=True)
class ModelSpec:
    """Everything the platform needs to know about one model.

    build_estimator(params, seed) returns an unfitted scikit-learn estimator (usually a Pipeline
    holding the feature transforms, so serving reuses them exactly). default_data(seed) returns the
    embedded default dataset. clean(df) drops rows the model must not learn from. sample_weight(df)
    weighs rows in the metrics. group_by names columns to report metrics per group.

    The predict path, used by evaluation, the golden prediction, every runtime's parity check,
    the service and batch scoring alike (`models.predict`):
    prepare(records) turns request records into the model's input (default: a DataFrame of the
    feature columns, dates parsed); predict(model, X) turns that input into `Outputs` (default:
    `model.predict`, plus `predict_proba` for classifiers). Training fits on prepare(records) too.

    compile(fitted_model), optional, returns a fast `predict(records) -> predictions` for a
    regression model: a `models.forest.CompiledRegressor`, saved as arrays and JSON (no pickle). Like any faster runtime (ONNX Runtime is the other) it is served only if it
    reproduced the predict path on the whole validation set at registration.
    """

    name: str
    task: Task
    schema: FeatureSchema
    build_estimator: Callable[[dict[str, Any], int], Any]
    default_data: Callable[[int], pd.DataFrame]
    config_path: Path
    clean: Callable[[pd.DataFrame], pd.DataFrame] = lambda df: df
    sample_weight: Callable[[pd.DataFrame], np.ndarray] | None = None
    group_by: tuple[str, ...] = field(default_factory=tuple)
    # Extra metrics computed from (y_true, y_pred, weights); e.g. the Favorita NWRMSLE.
    extra_metrics: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]] = field(
        default_factory=dict
    )
    prepare: Callable[[list[dict[str, Any]]], Any] | None = None
    predict: Callable[[Any, Any], Outputs] | None = None
    compile: Callable[[Any], Callable[[list[dict[str, Any]]], np.ndarray]] | None = None


@dataclass(frozen=True)
class Outputs:
    """What the predict path returns for n records, whatever runtime computed it."""

    predictions: np.ndarray  # (n,): floats for regression, class labels for classification
    probabilities: np.ndarray | None = None  # (n, k) in the model's `classes` order
