"""The predict API's HTTP contract, in process."""

import dataclasses
import gc
import json
import logging
import pickle
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import bentoml
import pytest

from core import modelfile
from models import forest
from serving import gc_pauses
from serving.runtime import serve_runtime
from tests.fixtures.variants import Touch


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


def test_every_prediction_is_logged_as_a_json_record(client, record, capfd, production_tag):
    capfd.readouterr()
    client.post("/predict", json={"records": [record]}, headers={"x-request-id": "log-1"})
    # Written before the answer, with one os.write on standard output's file descriptor.
    lines = capfd.readouterr().out.splitlines()
    entry = next(json.loads(line) for line in lines if '"log-1"' in line)
    assert entry["request_id"] == "log-1"
    assert entry["model"] == production_tag
    assert entry["inputs"][0]["family"] == record["family"]
    assert len(entry["outputs"]["predictions"]) == 1


def _with(record, **changes):
    return {"records": [{**record, **changes}]}


def _without(record, field):
    return {"records": [{k: v for k, v in record.items() if k != field}]}


ERROR_KEYS = {"error", "field", "expected", "errors"}
PROBLEM_KEYS = {"field", "error", "expected"}

BAD_JSON_BODIES = [
    # (case, body builder, the field named, words the error must use)
    ("string for a bool", lambda r: _with(r, onpromotion="yes"), "records[0].onpromotion",
     "expected true or false, got a string 'yes'"),
    ("int for a bool", lambda r: _with(r, holiday=1), "records[0].holiday",
     "expected true or false, got an integer 1"),
    ("float for an int", lambda r: _with(r, **{"class": 1003.0}), "records[0].class",
     "got a number 1003.0"),
    ("string for an int", lambda r: _with(r, **{"class": "1003"}), "records[0].class",
     "expected an integer from 0 to 99999, got a string '1003'"),
    ("missing field", lambda r: _without(r, "family"), "records[0].family", "missing"),
    ("extra field", lambda r: _with(r, store_nbr=1), "records[0].store_nbr",
     "not a known field: expected only date, item_nbr, family"),
    ("below range", lambda r: _with(r, **{"class": -1}), "records[0].class",
     "expected an integer from 0 to 99999, got an integer -1"),
    ("above range", lambda r: _with(r, **{"class": 10**9}), "records[0].class", "from 0 to 99999"),
    ("unknown category", lambda r: _with(r, family="TOYS"), "records[0].family",
     "expected one of the known categories (10 values, e.g. 'GROCERY I'"),
    ("unknown item", lambda r: _with(r, item_nbr=1), "records[0].item_nbr",
     "got an integer 1"),
    ("item as a string", lambda r: _with(r, item_nbr="106625"), "records[0].item_nbr",
     "got a string '106625': send it as a number, 106625, without quotes"),
    ("impossible date", lambda r: _with(r, date="2017-13-01"), "records[0].date",
     "got a string '2017-13-01' (month value is outside"),
    ("sentinel date", lambda r: _with(r, date="9999-12-31"), "records[0].date",
     "expected a date as \"YYYY-MM-DD\" from 1677-09-22 to 2262-04-11, got a string '9999-12-31'"),
    ("date before pandas' first", lambda r: _with(r, date="0001-01-01"), "records[0].date",
     "from 1677-09-22 to 2262-04-11, got a string '0001-01-01'"),
    ("null value", lambda r: _with(r, perishable=None), "records[0].perishable", "got null"),
    ("no records", lambda r: {"records": []}, "records",
     "expected a list of 1 to 1000 records, got a list of 0 items"),
    ("records not a list", lambda r: {"records": r}, "records", "got an object"),
    ("bare list body", lambda r: [r], "body",
     "expected a JSON object with the field records, got a list of 1 item"),
    ("too many records", lambda r: {"records": [r] * 1001}, "records", "got a list of 1001 items"),
    ("unknown top-level field", lambda r: {"records": [r], "debug": True}, "debug",
     "expected only records"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "body", "field", "says"), BAD_JSON_BODIES, ids=[c[0] for c in BAD_JSON_BODIES]
)
def test_bad_json_bodies_get_400_naming_the_field_and_what_was_expected(
    client, record, case, body, field, says
):
    response = client.post("/predict", json=body(record))
    assert response.status_code == 400
    error = response.json()
    assert set(error) == ERROR_KEYS
    assert error["field"] == field
    assert says in error["errors"][0]["error"]
    assert error["error"].startswith(f"{field}: ")


@pytest.mark.parametrize("case", BAD_JSON_BODIES, ids=[c[0] for c in BAD_JSON_BODIES])
def test_errors_name_no_internal_class_url_or_traceback(client, record, case):
    text = client.post("/predict", json=case[1](record)).text
    for internal in ("IODescriptor", "PredictRequest", "pydantic", "Traceback", '"loc"'):
        assert internal not in text


def test_unknown_category_names_a_few_categories_not_all_of_them(client, record, service_module):
    items = service_module.MODEL.schema.column("item_nbr").categories
    response = client.post("/predict", json=_with(record, item_nbr=1))
    named = [c for c in items if str(c) in response.text]
    assert len(items) == 60
    assert len(named) == 3
    assert "60 values" in response.json()["expected"]


def test_every_problem_of_a_body_is_listed(client, record):
    body = {"records": [{**record, "class": "x"}, {**record, "family": "TOYS", "holiday": 1}]}
    error = client.post("/predict", json=body).json()
    assert [p["field"] for p in error["errors"]] == [
        "records[0].class",
        "records[1].family",
        "records[1].holiday",
    ]
    assert all(set(p) == PROBLEM_KEYS for p in error["errors"])
    assert error["error"].endswith("(and 2 more, listed in errors)")


def test_a_rejected_body_leaves_no_traceback_in_the_server_log(client, record, caplog):
    # BentoML logs "Exception on /predict" with a traceback for each 400 it raises itself.
    with caplog.at_level(logging.INFO):
        response = client.post("/predict", json=_with(record, family="TOYS"))
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.exc_info or "Exception on" in r.getMessage()]


ERROR_RESPONSES = [
    # (case, method, path, body, headers, status, field)
    ("invalid body", "POST", "/predict", b'{"records": 1}', {}, 400, "records"),
    ("no such endpoint", "GET", "/nope", None, {}, 404, "path"),
    ("wrong method", "GET", "/predict", None, {}, 405, "method"),
    ("wrong method on a probe", "POST", "/readyz", b"{}", {}, 405, "method"),
    ("body too large", "POST", "/predict", b" " * (2 << 20), {}, 413, "body"),
    ("not JSON", "POST", "/predict", b"a", {"content-type": "text/csv"}, 415, "Content-Type"),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "headers", "status", "field"),
    ERROR_RESPONSES,
    ids=[c[0] for c in ERROR_RESPONSES],
)
def test_every_error_status_answers_the_same_json_shape(
    client, case, method, path, body, headers, status, field
):
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == ERROR_KEYS
    assert error["field"] == field
    assert error["expected"]
    assert [set(p) for p in error["errors"]] == [PROBLEM_KEYS]


def test_openapi_documents_the_error_shape_for_each_status(client):
    spec = client.get("/docs.json").json()
    responses = spec["paths"]["/predict"]["post"]["responses"]
    for status in ("400", "404", "405", "413", "415", "429", "500"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == ERROR_KEYS
    assert set(error["example"]) == ERROR_KEYS


RAW_BODIES = [
    ("empty body", b"", "application/json", 400, "missing: expected a list of 1 to 1000 records"),
    ("invalid JSON", b'{"records": [', "application/json", 400, "not valid JSON: EOF while"),
    ("NaN", b'{"records": [{"class": NaN}]}', "application/json", 400, "got a number NaN"),
    ("Infinity", b'{"records": [{"class": Infinity}]}', "application/json", 400, "Infinity"),
    ("text/plain", b"hello", "text/plain", 415, "unsupported media type 'text/plain'"),
    ("form", b"a=b", "application/x-www-form-urlencoded", 415, "send application/json"),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "multipart"),
    (
        "bentoml pickle",
        pickle.dumps({"records": []}),
        "application/vnd.bentoml+pickle",
        415,
        "send application/json",
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
    assert any(named in p["error"] for p in response.json()["errors"])
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


def copy_of_model(service_module, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bentoml.models.get(service_module.MODEL.tag).path, folder)
    return folder


def as_registered(model, folder):
    """The served model as if its files in `folder` were the ones registered: a stand-in for a
    model registered with them, to reach the checks behind the hash check."""
    files = {p.name: modelfile.sha256(p) for p in folder.iterdir() if p.name != "model.yaml"}
    return dataclasses.replace(model, files=files)


def test_a_compiled_predictor_saved_in_an_older_format_leaves_the_model_serving(
    service_module, record, tmp_path
):
    # A real old-format file, as a model registered before a forest format change would hold.
    folder = copy_of_model(service_module, tmp_path)
    compiled = forest.load(folder / "compiled.npz")
    compiled.forest.format = 1
    forest.save(compiled, folder / "compiled.npz")
    assert service_module.MODEL.runtime == "compiled"

    runtime, ready = serve_runtime(as_registered(service_module.MODEL, folder), folder)

    assert (runtime.name, ready) == ("sklearn", True)
    assert runtime.predict([record]) == pytest.approx(compiled([record]).tolist())


def test_a_forced_runtime_that_cannot_load_leaves_the_service_unready(service_module, tmp_path):
    folder = copy_of_model(service_module, tmp_path)
    (folder / "compiled.npz").write_bytes(b"not an npz")
    forced = dataclasses.replace(service_module.MODEL, runtime="compiled", forced=True)

    runtime, ready = serve_runtime(as_registered(forced, folder), folder)

    assert (runtime.name, ready) == ("compiled", False)


@pytest.mark.parametrize("name", ["compiled.npz", "model.skops"])
def test_a_model_file_that_is_not_the_registered_one_is_never_loaded(
    service_module, tmp_path, caplog, name
):
    folder = copy_of_model(service_module, tmp_path)
    marker = tmp_path / "ran"
    (folder / name).write_bytes(pickle.dumps(Touch(marker)))

    runtime, ready = serve_runtime(service_module.MODEL, folder)

    assert ready is False
    assert f"{name} does not match the sha256 recorded for it" in caplog.text
    with pytest.raises(RuntimeError, match="no runtime of this model could be loaded"):
        runtime.predict([{}])
    assert not marker.exists()


def test_a_model_registered_before_file_hashes_is_refused_with_the_fix(service_module, caplog):
    older = dataclasses.replace(service_module.MODEL, files=None)

    _, ready = serve_runtime(older, Path(bentoml.models.get(older.tag).path))

    assert ready is False
    assert "registered without file hashes" in caplog.text and "make train" in caplog.text


def test_a_model_whose_files_match_but_pickled_is_refused_without_running_it(
    service_module, tmp_path, caplog
):
    # Even with hashes that match (a release whose every record was rewritten), a pickle in
    # place of the skops file is refused by the package's persistence config, never unpickled.
    folder = copy_of_model(service_module, tmp_path)
    marker = tmp_path / "ran"
    (folder / "model.skops").unlink()
    (folder / "model.pkl").write_bytes(pickle.dumps(Touch(marker)))
    model = dataclasses.replace(
        as_registered(service_module.MODEL, folder), runtime="sklearn", forced=True
    )

    _, ready = serve_runtime(model, folder)

    assert ready is False
    assert "model.pkl is a pickle, which runs code when loaded: refused" in caplog.text
    assert not marker.exists()


def test_the_service_times_requests_out_without_keeping_them_alive(client):
    # BentoML's own timeout middleware keeps each request's objects for `timeout` seconds.
    assert gc_pauses.ReleasingTimeoutMiddleware in [m.cls for m in client.app.user_middleware]


def test_the_service_prepares_the_collector_once_ready(client):
    assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == gc_pauses.YOUNG_THRESHOLD


def external_hosts(html: str) -> set[str]:
    """Hosts other than this server that a page loads anything from (src, href, url(...))."""
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)|url\(["']?([^"')]+)""", html)
    return {urlsplit(u).hostname for pair in urls for u in pair if u and urlsplit(u).hostname}


def test_the_check_for_external_hosts_finds_bentomls_own_google_tag_manager():
    import _bentoml_impl.server

    page = Path(_bentoml_impl.server.__file__).with_name("main-openapi.html").read_text()
    assert "www.googletagmanager.com" in external_hosts(page)


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_the_docs_page_loads_nothing_from_another_host(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert external_hosts(response.text) == set()
    assert "googletagmanager" not in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assets = re.findall(r"""(?:src|href)="(/[^"]+)""", response.text)
    assert len(assets) == 5
    for asset in assets:  # the page works: everything it loads is served here
        assert client.get(asset).status_code == 200, asset
    assert "validatorUrl: null" in client.get("/docs-init.js").text
