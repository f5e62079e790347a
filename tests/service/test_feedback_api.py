"""POST /feedback's HTTP contract, in process: actuals accepted with 202 and written one line each
to the actuals log (standard output here, as nothing configures a file); a bad body gets a 4xx
naming the field, and nothing is written."""

from __future__ import annotations

import json

import pytest

OK = {"request_id": "req-1", "actual": 21.5}


def written(capfd) -> list[dict]:
    out = capfd.readouterr().out
    return [json.loads(x) for x in out.splitlines() if x.startswith('{"event":"actual"')]


def test_one_actual_is_accepted_with_202_and_written_with_the_serving_model(
    client, capfd, production_tag
):
    capfd.readouterr()
    response = client.post("/feedback", json={**OK, "observed_at": "2026-12-01T10:00:00Z"})
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    [line] = written(capfd)
    assert (line["request_id"], line["actual"], line["model"]) == ("req-1", 21.5, production_tag)
    assert line["observed_at"] == "2026-12-01T10:00:00.000+00:00"
    assert line["received_at"].endswith("+00:00")


def test_a_batch_of_actuals_is_written_one_line_each_in_order(client, capfd):
    capfd.readouterr()
    batch = [{"request_id": f"r{i}", "actual": i} for i in range(3)] + [
        {"request_id": "r3", "actual": 2.5}
    ]
    response = client.post("/feedback", json={"actuals": batch})
    assert response.status_code == 202
    assert response.json() == {"accepted": 4}
    assert [(x["request_id"], x["actual"]) for x in written(capfd)] == [
        ("r0", 0),
        ("r1", 1),
        ("r2", 2),
        ("r3", 2.5),
    ]


# Each accepted before: the monitor then crashed on the string, or its metrics were NaN or inf.
NOT_AN_ACTUAL = [
    ("a word", "lots", "a string 'lots'"),
    ("NaN as a string", "NaN", "a string 'NaN'"),
    ("a number past the bound", 1e308, "a number 1e+308"),
    ("a negative number past the bound", -1e308, "a number -1e+308"),
]


@pytest.mark.parametrize(
    ("case", "actual", "shown"), NOT_AN_ACTUAL, ids=[c[0] for c in NOT_AN_ACTUAL]
)
def test_a_regressors_actual_that_is_no_number_within_its_bound_gets_400_in_the_apis_words(
    client, capfd, service_module, case, actual, shown
):
    capfd.readouterr()
    response = client.post("/feedback", json={"actuals": [OK, {**OK, "actual": actual}]})
    assert response.status_code == 400, response.text
    rule = service_module.MODEL.actual
    assert response.json()["field"] == "actuals[1].actual"
    assert response.json()["error"] == (
        f"actuals[1].actual: expected a number from {rule.low} to {rule.high}, got {shown}"
    )
    assert written(capfd) == []


def test_an_actual_a_float_cannot_hold_is_named_by_its_size_not_echoed(client, service_module):
    response = client.post("/feedback", json={**OK, "actual": 10**400})
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"actual: expected {service_module.MODEL.actual.expected()}, got an integer of about 401"
        " digits"
    )


def test_feedback_that_is_not_json_gets_415_and_one_over_the_size_limit_413(client, service_module):
    as_text = client.post("/feedback", content=b"r1,3", headers={"content-type": "text/csv"})
    assert as_text.status_code == 415
    assert as_text.json()["field"] == "Content-Type"
    too_big = client.post(
        "/feedback",
        content=b" " * (service_module.SETTINGS.max_body_bytes + 1),
        headers={"content-type": "application/json"},
    )
    assert too_big.status_code == 413


def test_the_openapi_document_has_feedback_with_a_valid_example_and_its_202(client, service_module):
    post = client.get("/docs.json").json()["paths"]["/feedback"]["post"]
    example = post["requestBody"]["content"]["application/json"]["schema"]["example"]
    assert "202" in post["responses"] and "200" not in post["responses"]
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    service_module.FeedbackRequest.model_validate_json(json.dumps(example))


def test_actuals_received_are_counted_per_model_and_release(client, service_module):
    before = service_module.ACTUALS._value.get()
    assert client.post("/feedback", json={"actuals": [OK, OK]}).status_code == 202
    assert service_module.ACTUALS._value.get() == before + 2
