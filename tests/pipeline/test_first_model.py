"""A data scientist's own model through training on the first try (issue #23): scikit-learn's
diabetes data as a CSV, scaffolded, the estimator swapped for a RandomForest, and nothing else
edited: no parameter to remove, no threshold to lower, no scikit-learn type to trust."""

from __future__ import annotations

import re

import yaml
from sklearn.datasets import load_diabetes

from tests.conftest import copy_project, run_cli, swap_in_a_forest


def test_a_random_forest_on_diabetes_scaffolds_trains_and_passes_its_starter_gate(
    tmp_path, isolated_env
):
    repo = copy_project(tmp_path / "repo")
    load_diabetes(as_frame=True).frame.to_csv(repo / "diabetes.csv", index=False)
    scaffolded = run_cli(
        *("-m", "models.scaffold", "diabetes", "--data", "diabetes.csv"),
        *("--target", "target", "--task", "regression"),
        env=isolated_env,
        cwd=repo,
    )
    assert scaffolded.returncode == 0, scaffolded.stderr
    swap_in_a_forest(repo / "models" / "diabetes")  # the one edit

    trained = run_cli("-m", "training", "--model", "diabetes", "run", env=isolated_env, cwd=repo)

    assert trained.returncode == 0, trained.stderr
    assert re.search(r"\[gate\] PASS r2 = 0\.\d+ meets r2 >= 0\.\d+", trained.stderr)
    (model_yaml,) = (tmp_path / "bentoml" / "models" / "diabetes").glob("*/model.yaml")
    meta = yaml.safe_load(model_yaml.read_text())["metadata"]
    assert meta["predict_path"] == {"prepare": "default", "predict": "default"}
