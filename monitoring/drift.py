"""Drift of every feature and of the predictions: a bounded sample of live records against the
reference saved with the model at registration (validation rows with their predictions), with
Evidently's DataDriftPreset and its default method per column type and size.

Date columns are left out: live dates are later than the reference's by definition. Missing values
(nullable columns) are a category of their own in a categorical column, and left out of a numeric
column's test; each column reports its share of missing values, live and in the reference. A
numeric column with no value on one side cannot be tested: it is reported drifted ("all values
missing"), as a feed that stopped sending a feature is.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from models.contract import FeatureSchema

PREDICTION = "prediction"
T = TypeVar("T")
MISSING = "(missing)"  # a missing value in a categorical column: a category of its own


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool
    missing: float = 0.0  # share of live rows with no value in this column
    reference_missing: float = 0.0


@dataclass(frozen=True)
class DriftResult:
    rows: int  # live records compared
    reference_rows: int
    columns: list[ColumnDrift] = field(default_factory=list)

    @property
    def features(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.column != PREDICTION]

    @property
    def drifted_features(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def prediction(self) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == PREDICTION), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "drifted_features": self.drifted_features,
            "features": len(self.features),
            "columns": [c.__dict__ for c in self.columns],
        }


def _warm(module: str) -> None:
    """Import `module` before the first task asks for it. A failure is left to that task, which
    imports it again and reports the error: an initializer that raises makes multiprocessing's
    Pool start the process again, forever, and the task would never run."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        importlib.import_module(module)


class Worker(Executor):
    """One spawned process that imports Evidently (~6 s) from the start, on the other core, while
    this one ingests the logs; `compare` runs there. Spawned, not forked: the parent holds a
    database. Shut down, it is terminated, not waited for: a run that had nothing to compare
    (every version below drift.min_rows) does not wait for an import it never used."""

    def __init__(self, warm: str = "evidently.presets") -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(
            1, initializer=_warm, initargs=(warm,)
        )

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._pool.apply_async(
            fn, args, kwargs, callback=future.set_result, error_callback=future.set_exception
        )
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.terminate()
        self._pool.join()


def _frame(
    schema: FeatureSchema, df: pd.DataFrame, task: str
) -> tuple[pd.DataFrame, list[str], list[str]]:
    numerical: list[str] = []
    categorical: list[str] = []
    out: dict[str, pd.Series] = {}
    for c in schema.feature_columns:
        if c.kind == "date" or c.name not in df:
            continue
        if c.kind in ("int", "float"):
            out[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype(float)
            numerical.append(c.name)
        else:
            values = df[c.name].astype(object)
            out[c.name] = values.where(values.notna(), MISSING).astype(str)
            categorical.append(c.name)
    if PREDICTION in df:
        if task == "regression":
            out[PREDICTION] = pd.to_numeric(df[PREDICTION], errors="coerce").astype(float)
            numerical.append(PREDICTION)
        else:
            out[PREDICTION] = df[PREDICTION].astype(str)
            categorical.append(PREDICTION)
    return pd.DataFrame(out), numerical, categorical


def _is_drift(method: str, score: float, threshold: float) -> bool:
    # Evidently's tests give p-values (drift below the threshold) or distances (at or above it).
    return score < threshold if "p_value" in method else score >= threshold


def compare(
    schema: FeatureSchema,
    task: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html: Path | None = None,
) -> DriftResult:
    """Drift per column of `current` (live records with a `prediction` column) against
    `reference`; Evidently's own HTML report saved to `html` when given."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry: off
    with warnings.catch_warnings():
        # Evidently 0.7 warns about its own use of deprecated numpy, litestar and regex syntax:
        # nothing this code can act on (and errors under pytest's strict filters).
        warnings.simplefilter("ignore")
        return _compare(schema, task, reference, current, html)


def _compare(
    schema: FeatureSchema,
    task: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html: Path | None,
) -> DriftResult:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, numerical, categorical = _frame(schema, reference, task)
    cur, _, _ = _frame(schema, current, task)
    cur = cur[[c for c in ref.columns if c in cur.columns]]
    ref = ref[list(cur.columns)]
    numerical = [c for c in numerical if c in cur.columns]
    categorical = [c for c in categorical if c in cur.columns]
    if cur.empty or ref.empty:
        return DriftResult(rows=len(cur), reference_rows=len(ref))
    shares = {n: (_missing(cur, n), _missing(ref, n)) for n in cur.columns}
    # Evidently refuses a column without a value on either side: reported here, not tested.
    untestable = [n for n in numerical if 1.0 in shares[n]]
    numerical = [n for n in numerical if n not in untestable]
    cur, ref = cur.drop(columns=untestable), ref.drop(columns=untestable)
    columns = [
        ColumnDrift(n, "all values missing", 1.0, 1.0, shares[n][0] != shares[n][1], *shares[n])
        for n in untestable
    ]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, score = (
            str(config.get("method")),
            float(config.get("threshold")),
            float(metric["value"]),
        )
        name = config["column"]
        drifted = _is_drift(method, score, threshold)
        columns.append(ColumnDrift(name, method, score, threshold, drifted, *shares[name]))
    return DriftResult(rows=len(cur), reference_rows=len(ref), columns=columns)


def _missing(frame: pd.DataFrame, name: str) -> float:
    values = frame[name]
    return (
        float(values.isna().mean())
        if values.dtype.kind == "f"
        else float(values.eq(MISSING).mean())
    )
