"""A server that cannot start says why in one line and exits 2: a malformed setting or a model
the store does not hold is the operator's to fix, not a traceback to read. Served any way, even by
a raw `bentoml serve` outside make, it sends BentoML no usage event."""

from __future__ import annotations

import os
import subprocess

import pytest

from core.process import BENTOML, free_port
from core.settings import ROOT


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            {"BENTOGATE_LOG_KEEP": "five"},
            "error: BENTOGATE_LOG_KEEP: Input should be a valid integer, unable to parse string"
            " as an integer",
        ),
        (
            {"BENTOGATE_MODEL_TAG": "sales:nope"},
            f"error: model 'sales:nope' is not in the store {os.environ['BENTOML_HOME']}/models"
            f" (BENTOML_HOME={os.environ['BENTOML_HOME']})",
        ),
    ],
    ids=["malformed setting", "unknown model"],
)
def test_a_server_that_cannot_start_exits_2_with_one_line_naming_why(setting, said):
    result = subprocess.run(
        [BENTOML, "serve", "service:Predictor", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT,
        env={**os.environ, **setting},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == said


@pytest.mark.parametrize("home_set", [True, False], ids=["BENTOML_HOME set", "BENTOML_HOME unset"])
def test_a_raw_bentoml_serve_finding_no_model_names_the_store_it_searched_and_tracks_nothing(
    tmp_path, home_set
):
    # Outside make nothing sets BENTOML_DO_NOT_TRACK or BENTOML_HOME: BentoML searched ~/bentoml
    # (not the project's store) and posted its usage events. Its debug switch logs each event
    # instead of posting it.
    env = {k: v for k, v in os.environ.items() if k not in ("BENTOML_DO_NOT_TRACK", "BENTOML_HOME")}
    env.update(HOME=str(tmp_path), __BENTOML_DEBUG_USAGE="true", BENTOGATE_MODEL="sales")
    if home_set:
        env["BENTOML_HOME"] = str(tmp_path / "store")
    result = subprocess.run(
        [BENTOML, "serve", "service:Predictor", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 2
    store = (
        f"{tmp_path}/store/models (BENTOML_HOME={tmp_path}/store)"
        if home_set
        else f"{tmp_path}/bentoml/models (BENTOML_HOME is not set; make sets .bentogate/bentoml)"
    )
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no production model of 'sales' in the store {store}: run `make train` and "
        "`make promote`, or set BENTOGATE_MODEL_TAG"
    )
    assert "Tracking Payload" not in result.stdout + result.stderr
