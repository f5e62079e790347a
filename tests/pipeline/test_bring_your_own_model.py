"""A data scientist adds a model on their own data through the documented steps, with no change to
platform code: `make new-model`, `make train`, `make promote`, `make build`, then serve it."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sklearn.datasets import load_wine

from core.process import serving
from tests.conftest import copy_project, make

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the project's tracked files, so the new model package lands outside the repo."""
    dest = tmp_path_factory.mktemp("repo")
    copy_project(dest)
    load_wine(as_frame=True).frame.to_csv(dest / "wine.csv", index=False)
    return dest


def snapshot(repo) -> dict[str, str]:
    generated = (
        ".venv/",
        "build/",
        ".bentogate/",
        "reports/",
        ".ruff_cache/",
        "wine.csv",
        "serve.log",
    )
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in repo.rglob("*")
        if p.is_file()
        and not str(p.relative_to(repo)).startswith(generated)
        and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def repo_files(repo) -> dict[str, str]:
    return snapshot(repo)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {"BENTOML_HOME": str(tmp_path_factory.mktemp("byo-bentoml"))}


def test_scaffold_train_promote_build_and_serve_a_classifier(repo, repo_files, env):
    steps = [
        ("new-model", "NAME=wine", "DATA=wine.csv", "TARGET=target", "TASK=classification"),
        ("train", "MODEL=wine"),
        ("promote", "MODEL=wine"),
        ("build", "MODEL=wine"),
    ]
    for step in steps:
        result = make(repo, *step, env=env)
        assert result.returncode == 0, f"make {' '.join(step)}:\n{result.stdout}\n{result.stderr}"
    # No platform file changed: the only new source files are the model package's.
    after = snapshot(repo)
    assert {k: v for k, v in after.items() if not k.startswith("models/wine/")} == repo_files
    assert "models/wine/schema.py" in after
    tag = (repo / "build" / "bento-tag").read_text().strip()
    assert tag.startswith("wine_api:")

    with serving(
        tag, cwd=repo.parent, env=env, log_path=repo / "serve.log", ready_timeout=90
    ) as server:
        spec = httpx.get(f"{server.url}/docs.json").json()
        example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]["example"]
        ok = httpx.post(f"{server.url}/predict", json=example)
        bad = httpx.post(
            f"{server.url}/predict",
            json={"records": [{**example["records"][0], "alcohol": "high"}]},
        )

    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["model"].startswith("wine:")
    assert body["predictions"][0] in (0, 1, 2)
    assert set(body["probabilities"][0]) == {"0", "1", "2"}
    assert sum(body["probabilities"][0].values()) == pytest.approx(1.0)
    assert bad.status_code == 400
    assert bad.json()["field"] == "records[0].alcohol"
    assert "got a string 'high'" in bad.json()["error"]


def test_scaffold_refuses_a_target_that_is_not_a_column(repo, env):
    result = make(
        repo,
        "new-model",
        "NAME=wine2",
        "DATA=wine.csv",
        "TARGET=quality",
        "TASK=classification",
        env=env,
    )
    assert result.returncode != 0
    assert "TARGET 'quality' is not a column of wine.csv" in result.stderr
    assert not (repo / "models" / "wine2").exists()
