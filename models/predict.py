"""The one predict path: request records -> model input -> Outputs.

Evaluation, the golden prediction, every runtime's parity check, the service's scikit-learn
runtime and batch scoring all call these functions, so an edit to a model package's `prepare` or
`predict` is trained on, evaluated, gated, recorded and served alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.contract import Column, FeatureSchema, ModelSpec, Outputs

if TYPE_CHECKING:
    import pandas as pd


def default_prepare(schema: FeatureSchema, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as a DataFrame of the feature columns, in schema order: float columns as float64
    (a float field sent as 2 is 2.0, whatever the other records hold), dates as datetime64. A
    nullable number or flag is float64 too, null as NaN: its dtype never depends on whether this
    batch happens to hold a null (a nullable text category keeps None)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=list(schema.features))
    for col in schema.feature_columns:
        if col.kind == "float" or (col.nullable and numeric(col)):
            frame[col.name] = frame[col.name].astype("float64")
        elif col.kind == "date":
            frame[col.name] = pd.to_datetime(frame[col.name])
    return frame


def numeric(col: Column) -> bool:
    """A column whose values are numbers in the model input: int, float, bool, or a category
    whose categories are integers."""
    if col.kind in ("int", "float", "bool"):
        return True
    categories = col.categories or ()
    return col.kind == "category" and bool(categories) and isinstance(categories[0], int)


def default_predict(model: Any, features: Any) -> Outputs:
    """`model.predict`, and `predict_proba` where the model has it (classifiers)."""
    import numpy as np

    predictions = np.asarray(model.predict(features))
    probabilities = None
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        probabilities = np.asarray(model.predict_proba(features), dtype=float)
    return Outputs(predictions, probabilities)


def prepare(spec: ModelSpec, records: list[dict[str, Any]]) -> Any:
    if spec.prepare is not None:
        return spec.prepare(records)
    return default_prepare(spec.schema, records)


def predict(spec: ModelSpec, model: Any, features: Any) -> Outputs:
    out = (
        spec.predict(model, features)
        if spec.predict is not None
        else default_predict(model, features)
    )
    if not isinstance(out, Outputs):
        raise TypeError(f"models/{spec.name}: predict must return models.contract.Outputs")
    return out


def predict_records(spec: ModelSpec, model: Any, records: list[dict[str, Any]]) -> Outputs:
    return predict(spec, model, prepare(spec, records))


def custom_path(spec: ModelSpec) -> bool:
    """True when the package overrides prepare or predict (recorded with the model)."""
    return spec.prepare is not None or spec.predict is not None
