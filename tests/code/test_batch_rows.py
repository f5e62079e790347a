"""batch/rows.py: a file's rows checked like API records; every row is either a record or refused."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from batch import rows
from models.contract import Column, FeatureSchema

SCHEMA = FeatureSchema(
    columns=(
        Column(name="day", kind="date"),
        Column(name="item", kind="category", categories=(10, 20)),
        Column(name="count", kind="int", minimum=0, maximum=9),
        Column(name="price", kind="float"),
        Column(name="promo", kind="bool"),
        Column(name="y", kind="float"),
    ),
    features=("day", "item", "count", "price", "promo"),
    target="y",
)
VALIDATOR = rows.batch_model(SCHEMA)


def test_csv_text_is_read_as_the_json_values_a_client_would_send():
    frame = pd.DataFrame(
        {"day": ["2017-08-01"], "item": ["20"], "count": ["3"], "price": ["1.5"], "promo": ["True"]}
    )

    checked = rows.check(frame, SCHEMA, VALIDATOR)

    assert checked.rejected == []
    assert checked.records == [
        {"day": dt.date(2017, 8, 1), "item": 20, "count": 3, "price": 1.5, "promo": True}
    ]


def test_typed_columns_with_gaps_keep_their_integers_and_dates():
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(["2017-08-01", "2017-08-02"]),
            "item": [10.0, None],  # a gap turns the column into floats
            "count": [1.0, 2.0],
            "price": [2.0, 3.0],
            "promo": [False, True],
        }
    )

    checked = rows.check(frame, SCHEMA, VALIDATOR)

    assert checked.valid == [0]
    assert checked.records[0]["item"] == 10 and checked.records[0]["count"] == 1
    assert checked.rejected == [(1, "item", "item: expected one of 10, 20, got null")]


def test_every_bad_row_is_refused_with_all_its_reasons_and_no_row_vanishes():
    frame = pd.DataFrame(
        {
            "day": ["2017-08-01", "2017-13-40", "2017-08-03"],
            "item": ["10", "30", "ten"],
            "count": ["1", "12", "2"],
            "price": ["1", "x", "2"],
            "promo": ["false", "false", "maybe"],
        }
    )

    checked = rows.check(frame, SCHEMA, VALIDATOR)

    assert checked.valid == [0]
    assert [(p, f) for p, f, _ in checked.rejected] == [(1, "day"), (2, "item")]
    reasons = dict((p, why) for p, _, why in checked.rejected)
    assert "count: expected an integer from 0 to 9, got an integer 12" in reasons[1]
    assert "price: expected a number, got a string 'x'" in reasons[1]
    assert "promo: expected true or false, got a string 'maybe'" in reasons[2]
    assert len(checked.valid) + len(checked.rejected) == len(frame)


def test_an_input_without_a_feature_column_is_refused_naming_it():
    with pytest.raises(
        rows.MissingColumns, match="lacks the model's feature column\\(s\\) 'promo'"
    ):
        rows.check_columns(["day", "item", "count", "price"], SCHEMA)
