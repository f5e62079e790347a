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
        {"request_id": "r3", "actual": "a class label"}
    ]
    response = client.post("/feedback", json={"actuals": batch})
    assert response.status_code == 202
    assert response.json() == {"accepted": 4}
    assert [(x["request_id"], x["actual"]) for x in written(capfd)] == [
        ("r0", 0),
        ("r1", 1),
        ("r2", 2),
        ("r3", "a class label"),
    ]


BAD = [
    (
        "an empty request id in the fourth item",
        {"actuals": [OK, OK, OK, {**OK, "request_id": ""}]},
        "actuals[3].request_id",
    ),
    ("a request id over 128 characters", {**OK, "request_id": "x" * 129}, "request_id"),
    ("no actual", {"request_id": "a"}, "actual"),
    ("a boolean actual", {**OK, "actual": True}, "actual"),
    ("a null actual in a batch", {"actuals": [OK, {**OK, "actual": None}]}, "actuals[1].actual"),
    ("an integer actual a float cannot hold", {**OK, "actual": 10**400}, "actual"),
    ("an observed_at that is not a time", {**OK, "observed_at": "yesterday"}, "observed_at"),
    (
        "an observed_at before year 1 in UTC",
        {**OK, "observed_at": "0001-01-01T00:00:00+01:00"},
        "observed_at",
    ),
    ("an empty batch", {"actuals": []}, "actuals"),
    ("a batch over the limit", {"actuals": [OK] * 1001}, "actuals"),
    ("an unknown field", {**OK, "user": "x"}, "user"),
    ("an unknown field beside actuals", {"actuals": [OK], "source": "crm"}, "source"),
    ("a list for a body", [OK], "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD, ids=[c[0] for c in BAD])
def test_bad_feedback_gets_400_naming_the_field_and_writes_nothing(
    client, capfd, case, body, field
):
    capfd.readouterr()
    response = client.post("/feedback", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(field)
    assert written(capfd) == []


def test_an_actual_a_float_cannot_hold_is_named_by_its_size_not_echoed(client):
    response = client.post("/feedback", json={**OK, "actual": 10**400})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "actual: expected a number or a string, got an integer of about 401 digits"
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
