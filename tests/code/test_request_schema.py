"""The request schema (serving/schema.py) is strict about categories whose values are numbers: a
category is sent as the JSON type it has, never as a flag or a float that Python finds equal."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from models.contract import Column, FeatureSchema
from serving import errors
from serving.schema import request_model

SCHEMA = FeatureSchema(
    columns=(
        Column(name="grade", kind="category", categories=(1, 2, 3)),
        Column(name="stage", kind="category", categories=("I", "II"), nullable=True),
        Column(name="relapsed", kind="category", categories=("no", "yes")),
    ),
    features=("grade", "stage"),
    target="relapsed",
)


@pytest.mark.parametrize("sent", ["true", "1.0"])
def test_a_flag_or_a_float_is_refused_for_an_integer_category_naming_the_field(sent):
    # A Literal[1, 2, 3] alone took true and 1.0 as the category 1 (True == 1 == 1.0).
    model = request_model(SCHEMA, 10)
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(f'{{"records": [{{"grade": {sent}, "stage": "I"}}]}}')
    (problem,) = errors.from_validation(exc.value, model)

    assert problem["field"] == "records[0].grade"
    assert problem["error"].startswith("expected one of 1, 2, 3, got ")


def test_integer_and_text_categories_take_their_own_values_and_null_where_nullable():
    parsed = request_model(SCHEMA, 10).model_validate_json(
        json.dumps({"records": [{"grade": 2, "stage": None}, {"grade": 3, "stage": "II"}]})
    )
    assert [r.model_dump() for r in parsed.records] == [
        {"grade": 2, "stage": None},
        {"grade": 3, "stage": "II"},
    ]


@pytest.mark.parametrize("bound", [0, 0.0])
def test_a_bound_reads_the_same_whichever_equal_bound_python_built_first(bound):
    """typing caches Annotated[float, Ge(0)] and Annotated[float, Ge(0.0)] as one (the two
    bounds are equal): the words must not depend on which of them some other code made first."""
    schema = FeatureSchema(
        columns=(
            Column(name="dose", kind="float", minimum=bound, maximum=10.5),
            Column(name="weight", kind="float", minimum=bound),
            Column(name="y", kind="float"),
        ),
        features=("dose", "weight"),
        target="y",
    )
    model = request_model(schema, 10)
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(json.dumps({"records": [{"dose": -1.0, "weight": -2.5}]}))
    assert [p["error"] for p in errors.from_validation(exc.value, model)] == [
        "expected a number from 0 to 10.5, got a number -1.0",
        "expected a number of at least 0, got a number -2.5",
    ]
