"""Build the Bento (`make build`), serve it for real on a free loopback port, call it over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.process import serving
from tests.conftest import copy_project, make

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bento_tag(production_tag, tmp_path_factory) -> str:
    # In a copy: the working tree's build/bento-tag names the developer's last build, not ours.
    repo = copy_project(tmp_path_factory.mktemp("repo"))
    result = make(repo, "build", env={})
    assert result.returncode == 0, result.stderr
    return (repo / "build" / "bento-tag").read_text().strip()


@pytest.fixture(scope="module")
def server(bento_tag, tmp_path_factory):
    # From an unrelated directory: the Bento must carry everything it needs.
    cwd = tmp_path_factory.mktemp("serve")
    with serving(bento_tag, cwd=cwd, log_path=cwd / "server.log", ready_timeout=90) as s:
        yield s


@pytest.fixture(scope="module")
def example(server) -> dict:
    spec = httpx.get(f"{server.url}/docs.json").json()
    return spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["example"]


def test_built_bento_serves_the_production_model(server, example, production_tag):
    response = httpx.post(f"{server.url}/predict", json=example)
    assert response.status_code == 200
    assert response.json()["model"] == production_tag


def test_built_bento_serves_its_compiled_predictor_and_says_so(server, production_tag):
    # Bundled with the model, numpy only; a fallback to scikit-learn would be ~10x slower.
    assert f"{production_tag} loaded (runtime: compiled), ready: True" in (
        server.log_path.read_text()
    )


def test_built_bento_rejects_a_bad_record_naming_the_field_without_a_server_traceback(
    server, example
):
    bad = {"records": [{**example["records"][0], "family": "TOYS"}]}
    response = httpx.post(f"{server.url}/predict", json=bad)
    assert response.status_code == 400
    assert response.json()["field"] == "records[0].family"
    assert "got a string 'TOYS'" in response.json()["error"]
    assert "Traceback" not in server.log_path.read_text()


def test_built_bento_exposes_prediction_metrics_per_model_tag(server, example, production_tag):
    httpx.post(f"{server.url}/predict", json=example)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'bentogate_predictions_total{{model_tag="{production_tag}",release=""}}' in metrics


def test_schemathesis_finds_no_server_error(server, tmp_path):
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/docs.json",
            "--checks",
            "not_a_server_error",
            "--mode",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--max-time",
            "15",
            "--include-path",
            "/predict",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "No issues found" in result.stdout
