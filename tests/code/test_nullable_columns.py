"""A nullable column (models/contract.py) through the request schema (serving/schema.py) and the
predict path's input (models/predict.py): null is a value there and only there; a null anywhere
else is refused naming the field; the model input's dtypes never depend on whether a batch holds
a null."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from models.contract import Column, FeatureSchema
from models.predict import default_prepare
from serving import errors
from serving.schema import request_model

SCHEMA = FeatureSchema(
    columns=(
        Column(name="age", kind="int", minimum=0, nullable=True),
        Column(name="dose", kind="float", minimum=0, nullable=True),
        Column(name="stage", kind="category", categories=("I", "II"), nullable=True),
        Column(name="smoker", kind="bool", nullable=True),
        Column(name="seen", kind="date", nullable=True),
        Column(name="weight", kind="float", minimum=0),
        Column(name="relapsed", kind="category", categories=("no", "yes")),
    ),
    features=("age", "dose", "stage", "smoker", "seen", "weight"),
    target="relapsed",
)
FULL = {"age": 41, "dose": 1.5, "stage": "I", "smoker": True, "seen": "2017-08-01", "weight": 70.0}
EMPTY = {**FULL, "age": None, "dose": None, "stage": None, "smoker": None, "seen": None}


def refusal(record: dict) -> list[dict]:
    model = request_model(SCHEMA, 10)
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(json.dumps({"records": [record]}))
    return errors.from_validation(exc.value, model)


def test_null_is_accepted_in_every_nullable_field():
    parsed = request_model(SCHEMA, 10).model_validate_json(json.dumps({"records": [EMPTY]}))
    assert parsed.records[0].model_dump() == EMPTY


def test_null_in_a_field_that_is_not_nullable_is_refused_naming_it():
    problems = refusal({**FULL, "weight": None})
    assert [p["field"] for p in problems] == ["records[0].weight"]
    assert problems[0]["error"] == "expected a number of at least 0, got null"


def test_a_nullable_field_is_still_required_and_keeps_its_bounds_and_categories():
    missing = FULL.copy()
    del missing["age"]
    # The words say null is allowed there (they did not: "expected an integer of at least 0").
    assert refusal(missing)[0]["error"] == "missing: expected an integer of at least 0 or null"
    assert refusal({**FULL, "dose": -1.0})[0]["error"] == (
        "expected a number of at least 0 or null, got a number -1.0"
    )
    assert refusal({**FULL, "stage": "IV"})[0]["field"] == "records[0].stage"


def test_the_request_schema_documents_null_only_where_it_is_allowed():
    props = request_model(SCHEMA, 10).model_json_schema()["$defs"]["Record"]["properties"]
    assert {"type": "null"} in props["dose"]["anyOf"]
    assert props["weight"]["type"] == "number"
    assert "anyOf" not in props["weight"]


def test_the_target_cannot_be_nullable():
    with pytest.raises(ValidationError, match="target and time column cannot be nullable"):
        FeatureSchema(
            columns=(Column(name="x", kind="float"), Column(name="y", kind="int", nullable=True)),
            features=("x",),
            target="y",
        )


def test_nullable_numbers_and_flags_are_float64_whether_or_not_the_batch_holds_a_null():
    with_nulls = default_prepare(SCHEMA, [FULL, EMPTY])
    without = default_prepare(SCHEMA, [FULL])
    only_nulls = default_prepare(SCHEMA, [EMPTY])
    for name in ("age", "dose", "smoker"):
        assert with_nulls[name].dtype == without[name].dtype == only_nulls[name].dtype == "float64"
    assert with_nulls["age"].isna().tolist() == [False, True]
    assert with_nulls["smoker"].tolist()[0] == 1.0
    assert with_nulls["stage"].tolist() == ["I", None]
    assert with_nulls["seen"].isna().tolist() == [False, True]


def test_learned_categories_leave_missing_values_out_and_records_keep_null_dates():
    schema = SCHEMA.model_copy(
        update={
            "columns": (
                *SCHEMA.columns[:2],
                Column(name="stage", kind="category", nullable=True),
                *SCHEMA.columns[3:],
            )
        }
    )
    data = pd.DataFrame(
        {
            **{k: [v, None] for k, v in FULL.items()},
            "seen": pd.to_datetime(["2017-08-01", None]),
            "relapsed": ["no", "yes"],
        }
    )
    assert schema.fitted(data).column("stage").categories == ("I",)
    assert [r["seen"] for r in schema.records(data)] == ["2017-08-01", None]


def test_records_of_a_typed_frame_with_gaps_are_requests_the_api_accepts():
    typed = pd.DataFrame(
        {
            "age": [41.0, float("nan")],  # whole numbers with a gap: float in a frame
            "dose": [1.5, float("nan")],
            "stage": ["I", None],
            "smoker": [True, None],
            "seen": pd.to_datetime(["2017-08-01", None]),
            "weight": [70.0, 80.0],
            "relapsed": ["no", "yes"],
        }
    )

    records = SCHEMA.records(typed)
    parsed = request_model(SCHEMA, 10).model_validate_json(json.dumps({"records": records}))

    assert records[0]["age"] == 41 and isinstance(records[0]["age"], int)
    assert records[1] == {**EMPTY, "weight": 80.0}
    assert len(parsed.records) == 2


def test_load_test_traffic_keeps_rows_with_a_missing_category_where_it_is_nullable():
    from loadtests import traffic

    typed = pd.DataFrame(
        {**{k: [v] * 3 for k, v in FULL.items()}, "stage": ["I", None, "IV"], "relapsed": "no"}
    )

    sent = traffic.records(SCHEMA, typed)

    assert [r["stage"] for r in sent] == ["I", None]  # the unknown category alone is dropped
