"""Rows of an input file -> the records the API would accept, and the rows it would refuse.

The check is the API's own: the strict pydantic record model built from the model's fitted feature
schema (serving/schema.py), with its error words (serving/errors.py). A file has no JSON types, so
each feature column is first turned into the values a client would send: numbers stay numbers, a
text "12" in an integer column of a CSV becomes 12, a date becomes "YYYY-MM-DD", an empty cell
null; a decimal (a warehouse export's NUMERIC) is the number it holds, or its text where text is
due, and binary is read as UTF-8 text. Anything that cannot be read as its kind is passed on as it
is, so the record model refuses it with the same reason the API gives (a warehouse's 9999-12-31
sentinel date too: the API's dates are those pandas holds); a null likewise, unless its column is
nullable: then it is a value, as in the API. The batch's own refusal: bytes that are not UTF-8
text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError, create_model

from models.contract import Column, FeatureSchema
from serving import errors
from serving.schema import STRICT, record_model

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

KIND_WORDS = {"int": "integer", "float": "number", "bool": "true/false", "date": "date"}


class MissingColumns(ValueError):
    """The input lacks feature columns: every row would be refused, so the job is refused."""


class UnusableColumns(ValueError):
    """Feature columns of a type that never holds a valid value: the job is refused."""


@dataclass(frozen=True)
class Unreadable:
    """A cell no client could send (the reason says why): its row is refused."""

    why: str


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


def check_types(types: dict[str, list[pa.DataType]], schema: FeatureSchema) -> None:
    """Refuse feature columns whose type never holds a valid value: lists, structs and maps for
    any feature, binary where a number is due (binary text is read row by row elsewhere)."""
    import pyarrow as pa

    bad = []
    for col in schema.feature_columns:
        for t in types.get(col.name, []):
            nested = pa.types.is_nested(t)
            binary = (
                pa.types.is_binary(t)
                or pa.types.is_large_binary(t)
                or pa.types.is_fixed_size_binary(t)
            )
            if nested or (binary and (col.kind in ("int", "float") or _numbers_due(col))):
                word = KIND_WORDS.get(col.kind, "category")
                bad.append(f"column {col.name!r} is {t}, which never holds a valid {word}")
    if bad:
        raise UnusableColumns(f"{'; '.join(bad)}: every row would be refused")


def _numbers_due(col: Column) -> bool:
    """A category column whose categories are integers: a number is due, as for an int."""
    categories = col.categories or ()
    return col.kind == "category" and bool(categories) and isinstance(categories[0], int)


def _plain(v: Any, col: Column) -> Any:
    """A decimal or binary cell as a client would send it (see the module docstring)."""
    if isinstance(v, Decimal):
        text_due = col.kind == "category" and not _numbers_due(col)
        if text_due and v.is_finite():
            return format(v.normalize(), "f") if v != v.to_integral_value() else str(int(v))
        if col.kind != "float" and v.is_finite() and v == v.to_integral_value():
            return int(v)  # exact, however many digits
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return Unreadable(f"the bytes {bytes(v[:20])!r} are not UTF-8 text")
    return v


def _integral(v: Any) -> Any:
    """12.0 -> 12 (an integer column with a gap is read as floats); anything else unchanged."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def _from_text(v: Any, col: Column) -> Any:
    """A CSV cell (text) as the JSON value a client would send for this column."""
    v = _plain(v, col)
    if not isinstance(v, str):
        return v
    text = v.strip()
    if text == "":
        return None
    if col.kind in ("int", "float") or _numbers_due(col):
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
            # isoformat, not strftime: %Y writes the year 1 as "1", not "0001"
            values: list[Any] = [None if pd.isna(v) else v.date().isoformat() for v in s]
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
    bad: dict[int, list[tuple[str, str]]] = {}
    for i, row in enumerate(rows):
        for field, v in row.items():
            if isinstance(v, Unreadable):
                bad.setdefault(i, []).append((field, v.why))
    sent = [i for i in range(len(rows)) if i not in bad]
    text = json.dumps({"records": [rows[i] for i in sent]}, allow_nan=True)
    try:
        model.model_validate_json(text)
    except ValidationError as exc:
        for problem in errors.from_validation(exc, model):
            # field is "records[12].class": the row's position, then the field's name
            position, _, field = problem["field"].removeprefix("records[").partition("].")
            why = problem["error"].replace("listed in /docs.json", "in the model's schema")
            bad.setdefault(sent[int(position)], []).append((field, why))
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
