"""The predict API's HTTP contract, in process."""

import dataclasses
import gc
import json
import pickle
import shutil
import time

import bentoml
import joblib
import pytest

from serving import gc_pauses
from serving.runtime import serve_runtime


def test_predict_returns_one_prediction_per_record_and_the_model_tag(
    client, record, production_tag
):
    response = client.post("/predict", json={"records": [record, {**record, "onpromotion": False}]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == production_tag
    assert len(body["predictions"]) == 2
    assert body["predictions"][0] > body["predictions"][1]  # the promotion lifts sales
    assert response.headers["x-model-tag"] == production_tag


def test_predict_echoes_the_callers_request_id(client, record):
    response = client.post(
        "/predict", json={"records": [record]}, headers={"x-request-id": "abc-1"}
    )
    assert response.headers["x-request-id"] == "abc-1"


def test_openapi_example_is_a_valid_request(client):
    spec = client.get("/docs.json").json()
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["example"]
    response = client.post("/predict", json=example)
    assert response.status_code == 200, response.text


def test_request_schema_lists_categories_and_ranges(client):
    schemas = client.get("/docs.json").json()["components"]["schemas"]
    record = schemas["Record"]["properties"]
    assert "GROCERY I" in record["family"]["enum"]
    assert record["class"]["minimum"] == 0
    assert schemas["Record"]["additionalProperties"] is False


def test_swagger_ui_is_served_at_the_root(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_readyz_is_200_once_the_golden_prediction_matched(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_every_prediction_is_logged_as_a_json_record(client, record, capsys, production_tag):
    client.post("/predict", json={"records": [record]}, headers={"x-request-id": "log-1"})
    lines: list[str] = []
    deadline = time.monotonic() + 5
    while not any('"log-1"' in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.02)  # the log is written by a background thread, in bulk
        lines += capsys.readouterr().out.splitlines()
    entry = next(json.loads(line) for line in lines if '"log-1"' in line)
    assert entry["request_id"] == "log-1"
    assert entry["model"] == production_tag
    assert entry["inputs"][0]["family"] == record["family"]
    assert len(entry["outputs"]["predictions"]) == 1


def _with(record, **changes):
    return {"records": [{**record, **changes}]}


def _without(record, field):
    return {"records": [{k: v for k, v in record.items() if k != field}]}


BAD_JSON_BODIES = [
    # (case, body builder, expected status, field named in the error)
    ("string for a bool", lambda r: _with(r, onpromotion="yes"), 400, "onpromotion"),
    ("int for a bool", lambda r: _with(r, holiday=1), 400, "holiday"),
    ("float for an int", lambda r: _with(r, **{"class": 1003.0}), 400, "class"),
    ("string for an int", lambda r: _with(r, **{"class": "1003"}), 400, "class"),
    ("missing field", lambda r: _without(r, "family"), 400, "family"),
    ("extra field", lambda r: _with(r, store_nbr=1), 400, "store_nbr"),
    ("below range", lambda r: _with(r, **{"class": -1}), 400, "class"),
    ("above range", lambda r: _with(r, **{"class": 10**9}), 400, "class"),
    ("unknown category", lambda r: _with(r, family="TOYS"), 400, "family"),
    ("unknown item", lambda r: _with(r, item_nbr=1), 400, "item_nbr"),
    ("impossible date", lambda r: _with(r, date="2017-13-01"), 400, "date"),
    ("null value", lambda r: _with(r, perishable=None), 400, "perishable"),
    ("no records", lambda r: {"records": []}, 400, "records"),
    ("records not a list", lambda r: {"records": r}, 400, "records"),
    ("bare list body", lambda r: [r], 400, ""),
    ("too many records", lambda r: {"records": [r] * 1001}, 400, "records"),
    ("unknown top-level field", lambda r: {"records": [r], "debug": True}, 400, "debug"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_JSON_BODIES, ids=[c[0] for c in BAD_JSON_BODIES]
)
def test_bad_json_bodies_get_a_4xx_naming_the_field(client, record, case, body, status, field):
    response = client.post("/predict", json=body(record))
    assert response.status_code == status
    detail = response.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] for d in detail) or field == ""
    assert "Traceback" not in response.text


RAW_BODIES = [
    ("empty body", b"", "application/json", 400, "records"),
    ("invalid JSON", b'{"records": [', "application/json", 400, "Invalid JSON"),
    ("NaN", b'{"records": [{"class": NaN}]}', "application/json", 400, ""),
    ("Infinity", b'{"records": [{"class": Infinity}]}', "application/json", 400, ""),
    ("text/plain", b"hello", "text/plain", 415, "Content-Type"),
    ("form", b"a=b", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "Content-Type"),
    (
        "bentoml pickle",
        pickle.dumps({"records": []}),
        "application/vnd.bentoml+pickle",
        415,
        "Content-Type",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "ctype", "status", "named"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES]
)
def test_malformed_bodies_and_content_types_get_a_4xx_naming_the_problem(
    client, case, body, ctype, status, named
):
    response = client.post("/predict", content=body, headers={"content-type": ctype})
    assert response.status_code == status
    assert named in response.text
    assert response.headers["content-type"].startswith("application/json")


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle was deserialized')",))


def test_pickle_bodies_are_never_deserialized(client, tmp_path):
    marker = tmp_path / "unpickled"

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    response = client.post(
        "/predict",
        content=pickle.dumps(Touch()),
        headers={"content-type": "application/vnd.bentoml+pickle"},
    )
    assert response.status_code == 415
    assert not marker.exists()


def test_body_over_the_size_limit_gets_413(client, record, service_module):
    limit = service_module.SETTINGS.max_body_bytes
    body = json.dumps({"records": [record], "pad": "x" * limit}).encode()
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_chunked_body_over_the_size_limit_gets_413(client, service_module):
    limit = service_module.SETTINGS.max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_compiled_predictor_saved_in_an_older_format_leaves_the_model_serving(
    service_module, record, tmp_path
):
    # A real old-format pickle, as a model registered before a forest format change would hold.
    folder = tmp_path / "model"
    shutil.copytree(bentoml.models.get(service_module.MODEL.tag).path, folder)
    compiled = joblib.load(folder / "compiled.pkl")
    compiled.forest.format = 1
    joblib.dump(compiled, folder / "compiled.pkl")
    assert service_module.MODEL.runtime == "compiled"

    runtime, ready = serve_runtime(service_module.MODEL, folder)

    assert (runtime.name, ready) == ("sklearn", True)
    assert runtime.predict([record]) == pytest.approx(compiled([record]).tolist())


def test_a_forced_runtime_that_cannot_load_leaves_the_service_unready(service_module, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bentoml.models.get(service_module.MODEL.tag).path, folder)
    (folder / "compiled.pkl").write_bytes(b"not a pickle")
    forced = dataclasses.replace(service_module.MODEL, runtime="compiled", forced=True)

    runtime, ready = serve_runtime(forced, folder)

    assert (runtime.name, ready) == ("compiled", False)


def test_the_service_times_requests_out_without_keeping_them_alive(client):
    # BentoML's own timeout middleware keeps each request's objects for `timeout` seconds.
    assert gc_pauses.ReleasingTimeoutMiddleware in [m.cls for m in client.app.user_middleware]


def test_the_service_freezes_its_startup_heap_once_ready(client):
    assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() > 0
