"""What an actual of a model may be (models/actuals.py), and both ways in applying it: POST
/feedback's request model answers a classifier's unknown class in the API's words, and the
`make feedback` file is refused on the same values, naming line and column."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from models import actuals
from monitoring.feedback import FeedbackError, read
from serving import errors, feedback

CANCER = actuals.rule("classification", ["benign", "malignant"])
WINE = actuals.rule("classification", [0, 1, 2])
SALES = actuals.rule("regression", target={"min": 0.0, "max": 120.0})


def problems(rule: actuals.ActualRule, body: dict) -> list[dict]:
    model = feedback.feedback_request(10, rule)
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(json.dumps(body))
    return errors.from_validation(caught.value, model)


def test_a_regressors_bound_is_ten_spans_beyond_its_training_target_rounded_outwards():
    assert (SALES.low, SALES.high) == (-1200, 1320)
    small = actuals.rule("regression", target={"min": 0.5, "max": 0.75})
    assert (small.low, small.high) == (-2, 4)


def test_a_regressor_registered_without_its_target_range_is_capped():
    rule = actuals.rule("regression")
    assert (rule.low, rule.high) == (-actuals.CAP, actuals.CAP)
    assert rule.problem(1e308) is not None and rule.problem(-5.0) is None


@pytest.mark.parametrize(
    ("rule", "value", "problem"),
    [
        (SALES, "lots", "expected a number from -1200 to 1320, got a string 'lots'"),
        (SALES, "NaN", "expected a number from -1200 to 1320, got a string 'NaN'"),
        (SALES, 1e308, "expected a number from -1200 to 1320, got float 1e+308"),
        (SALES, float("nan"), "expected a number from -1200 to 1320, got float nan"),
        (SALES, True, "expected a number from -1200 to 1320, got true"),
        (SALES, 10**400, "expected a number from -1200 to 1320, got an integer of about 401 digits"),
        (CANCER, "lots", "expected one of the model's classes ('benign', 'malignant'), got a string 'lots'"),
        (CANCER, 1, "expected one of the model's classes ('benign', 'malignant'), got int 1"),
        (WINE, "7", "expected one of the model's classes (0, 1, 2), got a string '7'"),
    ],
)  # fmt: skip
def test_a_value_that_is_no_actual_of_the_model_is_named_with_what_was_expected(
    rule, value, problem
):
    assert rule.problem(value) == problem


@pytest.mark.parametrize(
    ("rule", "value"), [(SALES, 0), (SALES, -3.5), (SALES, 1320), (CANCER, "benign"), (WINE, 2)]
)
def test_an_actual_of_the_model_passes(rule, value):
    assert rule.problem(value) is None


def test_a_classifiers_feedback_with_an_unknown_class_gets_the_apis_words_naming_the_field():
    (problem,) = problems(CANCER, {"actuals": [{"request_id": "a", "actual": "lots"}]})
    assert problem == {
        "field": "actuals[0].actual",
        "error": "expected one of 'benign', 'malignant', got a string 'lots'",
        "expected": "one of 'benign', 'malignant'",
    }


def test_a_classifier_with_integer_classes_is_told_to_send_a_number_without_quotes():
    (problem,) = problems(WINE, {"request_id": "a", "actual": "1"})
    assert (
        problem["error"]
        == "expected one of 0, 1, 2, got a string '1': send it as a number, 1, without quotes"
    )


def test_a_regressors_feedback_request_documents_its_bound_and_a_valid_example():
    model = feedback.feedback_request(10, SALES)
    schema = json.dumps(model.model_json_schema())
    assert '"minimum": -1200' in schema and '"maximum": 1320' in schema
    model.model_validate_json(json.dumps(model.model_json_schema()["example"]))


def csv(tmp_path, body: str):
    path = tmp_path / "actuals.csv"
    path.write_text("request_id,actual,observed_at\n" + body)
    return path


@pytest.mark.parametrize(
    ("rule", "body", "said"),
    [
        (SALES, "r1,3,2026-12-04T10:00:00Z\nr2,1e308,2026-12-04T10:00:00Z\n",
         ":3: column 'actual': expected a number from -1200 to 1320, got float 1e+308"),
        (CANCER, "r1,benign,2026-12-04T10:00:00Z\nr2,lots,2026-12-04T10:00:00Z\n",
         ":3: column 'actual': expected one of the model's classes ('benign', 'malignant'), "
         "got a string 'lots'"),
    ],
    ids=["regressor past its bound", "classifier unknown class"],
)  # fmt: skip
def test_a_feedback_file_is_refused_on_the_actuals_the_api_refuses(tmp_path, rule, body, said):
    with pytest.raises(FeedbackError) as caught:
        read(csv(tmp_path, body), rule)
    assert str(caught.value).endswith(said)


def test_a_feedback_file_of_integer_classes_is_read(tmp_path):
    rows = read(csv(tmp_path, "r1,2,2026-12-04T10:00:00Z\n"), WINE)
    assert rows == [("r1", '"2"', "2026-12-04T10:00:00+00:00")]


@pytest.mark.parametrize(
    "target",
    [{"min": 2000, "max": 2020}, {"min": -2020, "max": -2000}, {"min": 0.0, "max": 120.0}],
    ids=["far-above-zero", "far-below-zero", "from-zero"],
)
def test_the_openapi_example_of_a_regressor_is_within_its_bound(target):
    # A target far from zero for its span (a year, a temperature in kelvin): the second example,
    # half the mid-range, lay below the bound, so the documented body was refused with a 400.
    model = feedback.feedback_request(10, actuals.rule("regression", target=target))
    example = model.model_json_schema()["example"]
    assert model.model_validate_json(json.dumps(example)).root.actuals


@pytest.mark.parametrize("value", [True, 1.0])
def test_a_classifier_with_integer_classes_refuses_a_flag_or_a_float_for_a_class(value):
    # Literal[0, 1, 2] let true and 1.0 through (Python's True == 1 == 1.0): stored as class 1.
    (problem,) = problems(WINE, {"request_id": "a", "actual": value})
    assert problem["field"] == "actual"
    assert problem["error"].startswith("expected one of 0, 1, 2, got ")
