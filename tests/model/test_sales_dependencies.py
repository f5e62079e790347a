"""The default sales model, registered as the pipeline registers it, and the code its Bento ships
need nothing the Bento's requirements lack; the same check fails when they do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest

from core.settings import ROOT
from serving.dependencies import Need, check


@pytest.fixture(scope="module")
def bento_requirements(tmp_path_factory) -> Path:
    """The Bento's requirements as `make build` exports them from uv.lock."""
    path = tmp_path_factory.mktemp("requirements") / "requirements.txt"
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "uv"),
            *("export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project"),
            *("--no-header", "--no-annotate", "--quiet", "-o", str(path)),
        ],
        cwd=ROOT,
        check=True,
    )
    return path


def test_the_sales_model_and_the_shipped_code_need_nothing_the_bento_lacks(
    production_tag, bento_requirements
):
    model_dir = Path(bentoml.models.get(production_tag).path)

    result = check(ROOT, "sales", model_dir, bento_requirements)

    assert result.problems == []
    assert {"model.skops", "compiled.npz", "service.py", "models/sales/estimator.py"} <= set(
        result.files
    )
    assert Need("sklearn.pipeline", "model.skops") in result.needs


def test_the_sales_model_fails_the_check_without_scikit_learn(production_tag, bento_requirements):
    model_dir = Path(bentoml.models.get(production_tag).path)
    without = bento_requirements.parent / "without-sklearn.txt"
    without.write_text(
        "\n".join(
            line
            for line in bento_requirements.read_text().splitlines()
            if not line.startswith("scikit-learn")
        )
    )

    problems = check(ROOT, "sales", model_dir, without).problems

    assert [p.module for p in problems] == ["sklearn"]
    assert problems[0].where[0] == "model.skops"
    assert any(w.startswith("models/sales/estimator.py:") for w in problems[0].where)


def test_the_command_finds_the_sales_model_in_the_store_and_passes_it(
    production_tag, bento_requirements
):
    result = subprocess.run(
        [sys.executable, "-m", "serving.dependencies", str(bento_requirements)],
        cwd=ROOT,
        env={**os.environ, "BENTOGATE_MODEL_TAG": production_tag},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{production_tag}: its ")
    assert "need bentoml, " in result.stdout
    assert result.stdout.endswith(f"all in {bento_requirements}\n")
