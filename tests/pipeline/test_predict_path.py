"""A data scientist edits the predict path of their model package: training, the quality gate,
the golden prediction and the service all follow the edit, and no faster runtime that ignores it
is admitted."""

from __future__ import annotations

import dataclasses
import json
import math

import bentoml
import httpx
import pytest
import yaml

from core.process import serving
from models import actuals, runtimes
from models.contract import Outputs
from models.predict import default_predict, predict_records
from tests.conftest import copy_project, make
from training.evaluate import evaluate

pytestmark = pytest.mark.slow

FACTOR = 1.5
EDIT = f"""

# ---- edited by the test: the model's outputs scaled by {FACTOR} --------------------------------
from models.contract import Outputs as _Outputs  # noqa: E402
from models.predict import default_predict as _default_predict  # noqa: E402


def predict(model, features):
    out = _default_predict(model, features)
    return _Outputs(out.predictions * {FACTOR})


SPEC = dataclasses.replace(SPEC, predict=predict)
"""


def scaled(model, features) -> Outputs:
    return Outputs(default_predict(model, features).predictions * FACTOR)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = copy_project(tmp_path_factory.mktemp("repo"))
    init = dest / "models" / "sales" / "__init__.py"
    init.write_text("import dataclasses\n" + init.read_text() + EDIT)
    return dest


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {"BENTOML_HOME": str(tmp_path_factory.mktemp("path-bentoml"))}


@pytest.fixture(scope="module")
def trained(repo, env):
    result = make(repo, "train", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    tag = result.stdout.strip().splitlines()[-1]
    name, version = tag.split(":")
    # The subprocess's own store: read the model's record as written.
    record = f"{env['BENTOML_HOME']}/models/{name}/{version}/model.yaml"
    with open(record) as f:
        return tag, yaml.safe_load(f)


def test_the_edited_path_is_what_training_evaluates_and_records(
    trained, repo, production_tag, sales_spec, sales_split
):
    _, info = trained
    meta = info["metadata"]
    # Same data, seed and parameters as the session's production model, so the same fitted
    # model: the candidate's metrics and golden prediction are that model's, through the edit.
    model = runtimes.load_registered(production_tag)
    spec = dataclasses.replace(sales_spec, predict=scaled)
    assert meta["split"] == bentoml.models.get(production_tag).info.metadata["split"]
    assert meta["metrics"]["overall"] == pytest.approx(
        evaluate(spec, model, sales_split[1])["overall"]
    )
    assert json.loads((repo / "reports" / "metrics.json").read_text())["overall"] == pytest.approx(
        meta["metrics"]["overall"]
    )
    unedited = evaluate(sales_spec, model, sales_split[1])["overall"]["nwrmsle"]
    assert meta["metrics"]["overall"]["nwrmsle"] > unedited + 0.01
    records = meta["golden"]["records"]
    assert meta["golden"]["predictions"] == pytest.approx(
        predict_records(spec, model, records).predictions.tolist()
    )


def test_a_regressor_records_its_training_target_range_and_bounds_its_actuals_by_it(
    trained, sales_spec, sales_clean
):
    meta = trained[1]["metadata"]
    target = sales_clean[sales_spec.schema.target]
    assert meta["target"] == {"min": target.min(), "max": target.max()}
    rule = actuals.of_record(meta)
    span = target.max() - target.min()
    assert rule.low == math.floor(target.min() - 10 * span)
    assert rule.high == math.ceil(target.max() + 10 * span)


def test_a_faster_runtime_that_ignores_the_edit_is_refused(trained):
    _, info = trained
    verdicts = info["metadata"]["runtimes"]
    assert verdicts["compiled"]["admitted"] is False
    assert verdicts["compiled"]["reason"].startswith("predictions differ by up to")
    assert info["metadata"]["runtime"] == "sklearn"


def test_the_service_answers_through_the_edited_path(trained, repo, env):
    tag, info = trained
    golden = info["metadata"]["golden"]
    with serving(
        "service:Predictor",
        cwd=repo,
        env={**env, "BENTOGATE_MODEL_TAG": tag},
        log_path=repo / "serve.log",
        ready_timeout=90,
    ) as server:
        response = httpx.post(f"{server.url}/predict", json={"records": golden["records"]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pytest.approx(golden["predictions"])
    assert f"{tag} loaded (runtime: sklearn), ready: True" in (repo / "serve.log").read_text()


def test_the_quality_gate_judges_the_edited_outputs(repo, env, trained):
    _, info = trained
    edited = info["metadata"]["metrics"]["overall"]["nwrmsle"]
    config = repo / "models" / "sales" / "config.yaml"
    text = config.read_text()
    # A bound the unedited model meets and the edited one misses.
    config.write_text(text.replace('nwrmsle: "<= 0.80"', f'nwrmsle: "<= {edited - 1e-4:.6f}"'))
    try:
        result = make(repo, "train", env=env)
    finally:
        config.write_text(text)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"nwrmsle = {edited:.4f} fails nwrmsle <=" in result.stderr
