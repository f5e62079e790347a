"""A server that cannot start says why in one line and exits 2: a malformed setting or a model
the store does not hold is the operator's to fix, not a traceback to read."""

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
        ({"BENTOGATE_MODEL_TAG": "sales:nope"}, "error: model 'sales:nope' is not in the store"),
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
