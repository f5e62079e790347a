"""Rows of an input file -> the records the API would accept, and the rows it would refuse.

The check is the API's own: the strict pydantic record model built from the model's fitted feature
schema (serving/schema.py), with its error words (serving/errors.py). A file has no JSON types, so
each feature column is first turned into the values a client would send: numbers stay numbers, a
text "12" in an integer column of a CSV becomes 12, a date becomes "YYYY-MM-DD", an empty cell
null. Anything that cannot be read as its kind is passed on as it is, so the record model refuses
it with the same reason the API gives.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError, create_model

from models.contract import Column, FeatureSchema
from serving import errors
from serving.schema import STRICT, record_model

if TYPE_CHECKING:
    import pandas as pd


class MissingColumns(ValueError):
    """The input lacks feature columns: every row would be refused, so the job is refused."""


@dataclass(frozen=True)
class Checked:
    records: list[dict[str, Any]]  # the valid rows as the API hands them to the runtime
    valid: list[int]  # positions of those rows in the frame
    rejected: list[tuple[int, str, str]]  # (position, first field at fault, every reason)


def batch_model(schema: FeatureSchema) -> type[BaseModel]:
    """`{"records": [Record, ...]}` without the API's per-request length bound."""
    record = record_model(schema)
    return create_model("Rows", __config__=STRICT, records=(list[record], ...))  # type: ignore[valid-type]


def check_columns(columns: list[str], schema: FeatureSchema) -> None:
    missing = [f for f in schema.features if f not in columns]
    if missing:
        raise MissingColumns(
            f"the input lacks the model's feature column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, columns))}"
        )


def _integral(v: Any) -> Any:
    """12.0 -> 12 (an integer column with a gap is read as floats); anything else unchanged."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def _from_text(v: Any, col: Column) -> Any:
    """A CSV cell (text) as the JSON value a client would send for this column."""
    if not isinstance(v, str):
        return v
    text = v.strip()
    if text == "":
        return None
    numeric = col.kind in ("int", "float") or (
        col.kind == "category" and col.categories and isinstance(col.categories[0], int)
    )
    if numeric:
        try:
            number = float(text)
        except ValueError:
            return v
        return number if col.kind == "float" else _integral(number)
    if col.kind == "bool":
        return {"true": True, "false": False}.get(text.lower(), v)
    return v


def json_value(v: Any, col: Column) -> Any:
    """One non-null cell of a text (or mixed) column as the JSON value a client would send."""
    v = _from_text(v, col)
    if col.kind == "date":
        return v.isoformat()[:10] if hasattr(v, "isoformat") else v
    return v if col.kind == "float" else _integral(v)


def json_values(frame: pd.DataFrame, schema: FeatureSchema) -> list[dict[str, Any]]:
    """The feature columns of `frame` as JSON-typed records (see the module docstring)."""
    import pandas as pd

    columns: dict[str, list[Any]] = {}
    for col in schema.feature_columns:
        s = frame[col.name]
        if col.kind == "date" and pd.api.types.is_datetime64_any_dtype(s):
            values = s.dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), None).tolist()
        else:
            values = s.astype(object).where(s.notna(), None).tolist()  # type: ignore[call-overload]
            if s.dtype == object or pd.api.types.is_string_dtype(s):
                values = [_from_text(v, col) for v in values]
            if col.kind == "date":
                values = [v.isoformat()[:10] if hasattr(v, "isoformat") else v for v in values]
            elif col.kind != "float":
                values = [_integral(v) for v in values]
        columns[col.name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def check(frame: pd.DataFrame, schema: FeatureSchema, model: type[BaseModel]) -> Checked:
    """Split `frame` into valid records and refused rows, each with its reasons."""
    rows = json_values(frame, schema)
    text = json.dumps({"records": rows}, allow_nan=True)
    try:
        parsed = model.model_validate_json(text)
        return Checked(_dump(parsed), list(range(len(rows))), [])
    except ValidationError as exc:
        bad: dict[int, list[tuple[str, str]]] = {}
        for problem in errors.from_validation(exc, model):
            # field is "records[12].class": the row's position, then the field's name
            position, _, field = problem["field"].removeprefix("records[").partition("].")
            why = problem["error"].replace("listed in /docs.json", "in the model's schema")
            bad.setdefault(int(position), []).append((field, why))
    valid = [i for i in range(len(rows)) if i not in bad]
    records = _dump(model.model_validate_json(json.dumps({"records": [rows[i] for i in valid]})))
    rejected = [
        (i, reasons[0][0], "; ".join(f"{f}: {why}" for f, why in reasons))
        for i, reasons in sorted(bad.items())
    ]
    return Checked(records, valid, rejected)


def _dump(parsed: BaseModel) -> list[dict[str, Any]]:
    """What the service hands its runtime: each validated record's model_dump()."""
    return [r.model_dump() for r in parsed.records]  # type: ignore[attr-defined]
