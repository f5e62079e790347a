"""A batch of rows checked column by column against the model's fitted schema: the bulk path.

The rules are the API's (serving/schema.py: the strict record model built from each column's kind,
range and categories), applied to whole columns. A typed column (integers, floats, booleans,
timestamps: what Parquet and Arrow carry) is checked with numpy: no nulls (in a nullable column a
null is a value, typed as default_prepare types it), no non-finite numbers, integers where an
integer is due, the bounds, the categories. A text column (CSV) is checked
once per distinct value with the API's own field type (`serving.schema.field_type`), after the
same reading of the text as `batch.rows`. A row that passes becomes one row of a typed frame, as
`models.predict.default_prepare` would build it from the record the API would accept; a row that
does not is only *flagged*: the per-row path (`batch.rows.check`) then decides, and words the
reason exactly as the API does. The check never lets through a row the API would refuse (tests/
code/test_batch_columnar.py compares both on every kind of bad value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from batch.rows import json_value
from models.contract import Column, FeatureSchema
from models.predict import numeric
from serving.schema import FIRST_DATE, LAST_DATE, STRICT, field_type

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

EXACT = 2**53  # beyond, a float64 no longer holds every integer: such rows take the per-row path


@dataclass(frozen=True)
class Columnar:
    frame: pd.DataFrame  # the rows that passed, typed as default_prepare builds them
    passed: np.ndarray  # bool per input row: True where the row is in `frame` (same order)


def check(frame: pd.DataFrame, schema: FeatureSchema) -> Columnar:
    """The feature columns of `frame` checked column-wise; see the module docstring."""
    import numpy as np
    import pandas as pd

    passed = np.ones(len(frame), dtype=bool)
    columns: dict[str, Any] = {}
    for col in schema.feature_columns:
        values, ok, null = _column(frame[col.name], col)
        if col.nullable:  # a null is a value here: typed as default_prepare types it
            values, ok = _with_nulls(values, null, col), ok | null
        columns[col.name] = values
        passed &= ok
    typed = pd.DataFrame({n: _take(v, passed) for n, v in columns.items()})
    return Columnar(typed, passed)


def _take(values: Any, mask: np.ndarray) -> Any:
    return values[mask] if not hasattr(values, "iloc") else values[mask].reset_index(drop=True)


def _with_nulls(values: Any, null: np.ndarray, col: Column) -> Any:
    """The values of a nullable column with its nulls as `default_prepare` holds them: numbers
    and flags float64 with NaN, dates NaT, text None."""
    import numpy as np

    arr = np.asarray(values)
    if numeric(col):
        return np.where(null, np.nan, np.where(null, 0, arr).astype(np.float64))
    if col.kind == "date":
        return np.where(null, np.datetime64("NaT", "ns"), arr).astype("datetime64[ns]")
    texts = arr.astype(object)  # a copy
    texts[null] = None
    return texts


def _column(s: pd.Series, col: Column) -> tuple[Any, np.ndarray, np.ndarray]:
    """(the column's values as the model input holds them, which rows surely pass, which rows
    hold a null)."""
    values, ok, null = _values(s, col)
    return values, ok, s.isna().to_numpy() if null is None else null


def _values(s: pd.Series, col: Column) -> tuple[Any, np.ndarray, np.ndarray | None]:
    import pandas as pd

    n = len(s)
    types = pd.api.types
    if types.is_datetime64_any_dtype(s.dtype):
        if col.kind != "date":
            return _nothing(n, col)
        day = s.dt.normalize()
        if getattr(day.dt, "tz", None) is not None:  # the row's date where it was recorded
            day = day.dt.tz_localize(None)
        # A day datetime64[ns] cannot hold (a 9999-12-31 sentinel in a datetime64[us] column)
        # is flagged: the per-row path refuses it, naming it.
        ok = s.notna() & (day >= pd.Timestamp(FIRST_DATE)) & (day <= pd.Timestamp(LAST_DATE))
        return day.where(ok).astype("datetime64[ns]").to_numpy(), ok.to_numpy(), None
    if types.is_bool_dtype(s.dtype):
        if col.kind != "bool":
            return _nothing(n, col)  # true/false where a number or text is due
        ok = s.notna().to_numpy()
        return s.fillna(False).to_numpy(dtype=bool), ok, None
    if types.is_integer_dtype(s.dtype) or types.is_float_dtype(s.dtype):
        return _numbers(s, col)
    if s.dtype == object or types.is_string_dtype(s.dtype):
        return _text(s, col)
    return _nothing(n, col)  # another dtype (e.g. pandas categorical): the per-row path


def _numbers(s: pd.Series, col: Column) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """An integer or float column: the bounds, the categories, integral values where due."""
    import numpy as np

    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(x)  # NaN: null; the API refuses infinity too
    if col.kind == "float":
        ok = finite & (np.abs(x) <= EXACT) if s.dtype.kind in "iu" else finite
        if col.minimum is not None:
            ok &= x >= col.minimum
        if col.maximum is not None:
            ok &= x <= col.maximum
        return x, ok, np.isnan(x)
    if _numeric(col):
        ok = finite & (np.abs(x) <= EXACT)
        ok &= x == np.floor(np.where(ok, x, 0))  # 2.0 is sent as 2; 2.5 is not an integer
        whole = np.where(ok, x, 0).astype(np.int64)
        if col.kind == "int":
            if col.minimum is not None:
                ok &= whole >= int(col.minimum)
            if col.maximum is not None:
                ok &= whole <= int(col.maximum)
        else:
            ok &= np.isin(whole, np.asarray(col.categories, dtype=np.int64))
        return whole, ok, np.isnan(x)
    return _nothing(len(s), col)  # a number where text, a date or true/false is due


def _text(s: pd.Series, col: Column) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """A text (or mixed) column: each distinct value read as `batch.rows` reads it, then
    checked by the API's own type for the field."""
    import numpy as np
    import pandas as pd

    positions, distinct = pd.factorize(s, use_na_sentinel=True)
    adapter = _adapter(col)
    values: list[Any] = []
    good: list[bool] = []
    for v in distinct.tolist():
        try:
            text = json.dumps(json_value(v, col), allow_nan=True)
            values.append(adapter.validate_json(text))
            good.append(True)
        except (ValidationError, TypeError, ValueError):
            values.append(None)
            good.append(False)
    picked = pd.Series([*values, None], dtype=object).to_numpy()[positions]
    # -1: a null cell; a good None: a blank cell read as null (a nullable column's type takes it)
    null = (positions < 0) | (np.asarray([*good, False], dtype=bool)[positions] & (picked == None))  # noqa: E711
    ok = ~null & np.asarray([*good, False], dtype=bool)[positions]
    if col.kind == "date":
        dates = picked.copy()
        dates[~ok] = None  # unparsed or null: NaT below
        days = pd.Series(dates)
        return pd.to_datetime(days).astype("datetime64[ns]").to_numpy(), ok, null
    if _numeric(col):
        return np.where(ok, picked, 0).astype(np.int64), ok, null
    if col.kind == "float":
        return np.where(ok, picked, np.nan).astype(np.float64), ok, null
    if col.kind == "bool":
        return np.where(ok, picked, False).astype(bool), ok, null
    return picked, ok, null  # strings


def _numeric(col: Column) -> bool:
    """An integer column, or a category column whose categories are integers."""
    if col.kind == "int":
        return True
    return (
        col.kind == "category"
        and bool(col.categories)
        and all(isinstance(c, int) and not isinstance(c, bool) for c in col.categories or ())
    )


def _nothing(n: int, col: Column) -> tuple[Any, np.ndarray, None]:
    """Every row of this column goes to the per-row path (which words the reason); a null in a
    nullable column passes all the same."""
    import numpy as np

    return np.zeros(n, dtype=object), np.zeros(n, dtype=bool), None


def _adapter(col: Column) -> TypeAdapter[Any]:
    return TypeAdapter(field_type(col), config=STRICT)
