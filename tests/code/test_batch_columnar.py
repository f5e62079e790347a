"""batch/columnar.py: the column-wise check passes exactly what the API's per-row check accepts,
typed as the predict path's input, and flags every other row for the per-row path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch import columnar, rows
from models import predict
from models.contract import Column, FeatureSchema

SCHEMA = FeatureSchema(
    columns=(
        Column(name="day", kind="date"),
        Column(name="item", kind="category", categories=(10, 20)),
        Column(name="family", kind="category", categories=("A", "B c")),
        Column(name="name", kind="category"),
        Column(name="count", kind="int", minimum=0, maximum=9),
        Column(name="price", kind="float", minimum=-1.5, maximum=1e6),
        Column(name="promo", kind="bool"),
        Column(name="y", kind="float"),
    ),
    features=("day", "item", "family", "name", "count", "price", "promo"),
    target="y",
)
VALIDATOR = rows.batch_model(SCHEMA)
GOOD = {
    "day": "2017-08-01",
    "item": "10",
    "family": "A",
    "name": "x",
    "count": "3",
    "price": "1.5",
    "promo": "true",
}
# Per column, values the API accepts and values it refuses, as a CSV (text) would hold them.
TEXT = {
    "day": ["2017-08-01", "2016-02-29", "2017-13-40", " 2017-08-01", "2017-8-1", "", None, "x"],
    "item": ["10", "20", "20.0", " 10 ", "30", "10.5", "ten", "", "1e1", "True"],
    "family": ["A", "B c", "a", " A", "", "C", "1"],
    "name": ["x", "", "  ", "12", "any text"],
    "count": ["0", "9", "3.0", "10", "-1", "2.5", "abc", "", "1_000", "inf", "nan"],
    "price": ["1.5", "-1.5", "-1.6", "1e6", "2e6", "1", "nan", "inf", "-inf", "x", "", "1_0"],
    "promo": ["true", "false", "TRUE", " False ", "yes", "1", "0", ""],
}
# The same, as typed columns (Parquet, Arrow), with nulls where a typed column can hold them.
TYPED = {
    "day": pd.to_datetime(["2017-08-01", "2017-08-02 13:45", None], format="ISO8601"),
    "item": pd.array([10, 20, 30, -10, 0]),
    "item_float": np.array([10.0, 20.0, 10.5, np.nan, np.inf]),
    "count": pd.array([0, 9, 10, -1]),
    "count_nullable": pd.array([0, None, 9], dtype="Int64"),
    "count_float": np.array([3.0, 2.5, np.nan, 1e300]),
    "count_bool": np.array([True, False]),
    "price": np.array([1.5, -1.5, -1.6, 1e6, 2e6, np.nan, np.inf]),
    "price_int": pd.array([1, -2, 10**7]),
    "promo": np.array([True, False]),
    "promo_int": pd.array([0, 1]),
    "family_int": pd.array([1, 2]),
    "name_float": np.array([1.0]),
}


def frames() -> list[pd.DataFrame]:
    """One frame per column and variant: the good row, then one row per listed value."""
    out = []
    for name, values in TEXT.items():
        out.append(pd.DataFrame([GOOD] + [{**GOOD, name: v} for v in values]))
    for key, values in TYPED.items():
        name = key.split("_")[0]
        frame = pd.DataFrame([GOOD] * len(values)).astype(
            {"count": "int64", "price": "float64", "item": "int64"}
        )
        frame["promo"] = True
        frame["day"] = pd.Timestamp("2017-08-01")
        frame[name] = values
        out.append(frame)
    return out


@pytest.mark.parametrize("frame", frames(), ids=lambda f: "/".join(map(str, f.dtypes.tolist())))
def test_the_column_wise_check_passes_exactly_the_rows_the_api_accepts_typed_as_the_predict_path_would(
    frame,
):
    per_row = rows.check(frame, SCHEMA, VALIDATOR)

    checked = columnar.check(frame, SCHEMA)

    assert np.flatnonzero(checked.passed).tolist() == per_row.valid
    expected = predict.default_prepare(SCHEMA, per_row.records)
    pd.testing.assert_frame_equal(checked.frame, expected, check_dtype=False)
    if len(expected):  # an empty frame of records has no dtypes to compare
        assert [t.kind for t in checked.frame.dtypes] == [t.kind for t in expected.dtypes]


def test_a_clean_typed_frame_passes_whole_without_any_row_going_through_the_per_row_path():
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(["2017-08-01"] * 3),
            "item": [10, 20, 10],
            "family": pd.array(["A", "B c", "A"], dtype="string"),
            "name": ["x", "y", "z"],
            "count": [0, 5, 9],
            "price": [1.0, 2.5, -1.5],
            "promo": [True, False, True],
        }
    )

    checked = columnar.check(frame, SCHEMA)

    assert checked.passed.all()
    assert len(checked.frame) == 3


def test_a_bad_value_in_a_clean_typed_frame_is_flagged_for_the_per_row_path_and_only_its_row():
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(["2017-08-01"] * 3),
            "item": [10, 30, 10],  # 30 is not a category
            "family": ["A", "B c", "A"],
            "name": ["x", "y", "z"],
            "count": [0, 5, 99],  # above the maximum
            "price": [1.0, 2.5, -1.5],
            "promo": [True, False, True],
        }
    )

    checked = columnar.check(frame, SCHEMA)

    assert checked.passed.tolist() == [True, False, False]
    reasons = [why for _, _, why in rows.check(frame.iloc[[1, 2]], SCHEMA, VALIDATOR).rejected]
    assert reasons == [
        "item: expected one of 10, 20, got an integer 30",
        "count: expected an integer from 0 to 9, got an integer 99",
    ]


# Every feature nullable: a null (an empty cell, NaN, NaT, None) is then a value, not a refusal.
NULLABLE = SCHEMA.model_copy(
    update={
        "columns": tuple(
            c.model_copy(update={"nullable": c.name in SCHEMA.features}) for c in SCHEMA.columns
        )
    }
)


@pytest.mark.parametrize("frame", frames(), ids=lambda f: "/".join(map(str, f.dtypes.tolist())))
def test_nulls_in_nullable_columns_pass_column_wise_as_the_api_accepts_them_typed_as_the_predict_path_would(
    frame,
):
    per_row = rows.check(frame, NULLABLE, rows.batch_model(NULLABLE))

    checked = columnar.check(frame, NULLABLE)

    assert np.flatnonzero(checked.passed).tolist() == per_row.valid
    expected = predict.default_prepare(NULLABLE, per_row.records)
    pd.testing.assert_frame_equal(checked.frame, expected, check_dtype=False)
    if len(expected):
        assert [t.kind for t in checked.frame.dtypes] == [t.kind for t in expected.dtypes]
