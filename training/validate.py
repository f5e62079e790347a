"""Validate stage: check a dataset against the model's data contract and return it typed.

Every problem names the column and the rows (1-based data rows: row 1 is the line after a CSV's
header), so a bad file can be fixed without guessing. A missing value is one only in a column the
schema marks nullable: it stays missing (NaN, NaT, None) in the typed frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.contract import Column, FeatureSchema

SHOWN_ROWS = 5


class DataValidationError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid data:\n  " + "\n  ".join(problems))


def _rows(mask: np.ndarray | pd.Series) -> str:
    idx = np.flatnonzero(np.asarray(mask)) + 1
    shown = ", ".join(str(i) for i in idx[:SHOWN_ROWS])
    more = f" and {len(idx) - SHOWN_ROWS} more" if len(idx) > SHOWN_ROWS else ""
    return f"{len(idx)} row{'s' if len(idx) != 1 else ''} ({shown}{more})"


_TRUE = {True, "true", "True", "TRUE", "1"}
_FALSE = {False, "false", "False", "FALSE", "0"}


def _typed(col: Column, s: pd.Series, problems: list[str]) -> pd.Series:
    """Return `s` converted to the column's kind; add a problem for each kind of bad value."""
    present = s.notna().to_numpy()
    if col.kind in ("int", "float"):
        if s.dtype == bool:
            problems.append(f"column {col.name!r}: expected numbers, found true/false values")
            return s
        num = pd.to_numeric(s, errors="coerce")
        vals = num.to_numpy(dtype=float, na_value=np.nan)
        found = len(problems)
        if (bad := present & np.isnan(vals)).any():
            problems.append(f"column {col.name!r}: not a number in {_rows(bad)}")
        if (infinite := np.isinf(vals)).any():
            problems.append(f"column {col.name!r}: infinite value in {_rows(infinite)}")
        if col.kind == "int" and (frac := np.isfinite(vals) & (vals != np.round(vals))).any():
            problems.append(f"column {col.name!r}: not a whole number in {_rows(frac)}")
        if col.minimum is not None and (low := vals < col.minimum).any():
            problems.append(f"column {col.name!r}: below minimum {col.minimum:g} in {_rows(low)}")
        if col.maximum is not None and (high := vals > col.maximum).any():
            problems.append(f"column {col.name!r}: above maximum {col.maximum:g} in {_rows(high)}")
        whole = col.kind == "int" and len(problems) == found and present.all()
        return num.astype("int64") if whole else num
    if col.kind == "bool":
        if s.dtype == bool:
            return s
        objs = s.astype(object)
        bad = present & ~objs.isin(_TRUE | _FALSE).to_numpy()
        if bad.any():
            problems.append(f"column {col.name!r}: not true/false in {_rows(bad)}")
            return s
        flags = objs.isin(_TRUE)
        return flags if present.all() else flags.astype(object).mask(~present, None)
    if col.kind == "date":
        parsed = pd.to_datetime(s, errors="coerce", format="ISO8601")
        bad = present & parsed.isna().to_numpy()
        if bad.any():
            problems.append(f"column {col.name!r}: not an ISO date in {_rows(bad)}")
        return parsed
    # category
    if col.categories is not None:
        bad = present & ~s.isin(col.categories).to_numpy()
        if bad.any():
            examples = ", ".join(repr(v) for v in pd.unique(s[bad])[:3])
            problems.append(f"column {col.name!r}: unknown category ({examples}) in {_rows(bad)}")
    return s


def validate(df: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Return a typed copy of `df` with the contract's columns; raise DataValidationError."""
    missing = [c.name for c in schema.columns if c.name not in df.columns]
    if missing:
        raise DataValidationError(
            [f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"]
        )
    if df.empty:
        raise DataValidationError(["the dataset has no rows"])
    problems: list[str] = []
    out = {}
    for col in schema.columns:
        s = df[col.name].reset_index(drop=True)
        nulls = s.isna().to_numpy()
        if nulls.any() and not col.nullable:  # a nullable column's model handles them
            hint = " (nullable=True in the schema if the model handles them)"
            hint = hint if col.name in schema.features else ""
            problems.append(f"column {col.name!r}: missing value in {_rows(nulls)}{hint}")
        out[col.name] = _typed(col, s, problems)
    if problems:
        raise DataValidationError(problems)
    return pd.DataFrame(out)
