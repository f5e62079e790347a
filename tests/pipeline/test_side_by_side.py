"""Two models side by side in one environment of the local target, for real: each at its own stable
address with its own history, and a rollback of one never touches (or restores) the other.

In a copy of the project with two model packages scaffolded from scikit-learn's wine data
(`wine_a`, `wine_b`): wine_a is trained twice (two releases to roll back between), wine_b once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from sklearn.datasets import load_wine

from core.process import free_block
from core.settings import ROOT
from models.scaffold import scaffold
from tests.conftest import copy_project, make

pytestmark = pytest.mark.slow

PYTHON = str(ROOT / ".venv" / "bin" / "python")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The copy: staging and production on free ports 4 apart; wine_a and wine_b scaffolded,
    which gives them port offsets 2 and 3 (sales keeps 0, cancer 1)."""
    dest = copy_project(tmp_path_factory.mktemp("side-by-side") / "repo")
    load_wine(as_frame=True).frame.to_csv(dest / "wine.csv", index=False)
    for name in ("wine_a", "wine_b"):
        config = scaffold(name, Path("wine.csv"), "target", "classification", root=dest) / (
            "config.yaml"
        )
        text = config.read_text()
        assert "params: {}" in text, "the scaffold's params changed: update this fixture"
        config.write_text(text.replace("params: {}", "params: {max_iter: 30}"))
    first = free_block(8)
    cfg = yaml.safe_load((dest / "deploy" / "config.yaml").read_text())
    for env, port in (("staging", first), ("production", first + 4)):
        cfg["environments"][env]["local"].update(port=port, ready_timeout_s=120, drain_s=0.2)
    (dest / "deploy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.fixture(scope="module")
def env(repo) -> dict[str, str]:
    return {"BENTOML_HOME": str(repo / ".bentogate" / "bentoml")}


@pytest.fixture(scope="module", autouse=True)
def stop_everything(repo, env):
    yield
    make(repo, "down", env=env)


def run(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, *args],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def bentos(repo, env) -> dict[str, tuple[str, str]]:
    """{"a1", "a2", "b1"}: (Bento tag, model tag)."""
    # One OpenMP thread: on a busy 2-core machine more threads only wait for each other.
    trained = run(
        repo,
        *("-m", "tests.fixtures.train_models", "wine_a", "wine_b", "wine_a"),
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    tags = [line for line in trained.stdout.split() if re.fullmatch(r"wine_[ab]:\w+", line)]
    out = {}
    for key, tag in zip(("a1", "b1", "a2"), tags, strict=True):
        built = make(repo, "build", f"MODEL={tag.split(':')[0]}", f"MODEL_TAG={tag}", env=env)
        assert built.returncode == 0, built.stderr[-3000:]
        out[key] = ((repo / "build" / "bento-tag").read_text().strip(), tag)
    return out


def deploy(repo, env, bento: str) -> None:
    result = run(repo, "-m", "deploy", "deploy", "staging", bento, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def address(repo: Path, model: str) -> str:
    """The documented scheme: the environment's port + the model's port offset."""
    base = yaml.safe_load((repo / "deploy" / "config.yaml").read_text())["environments"]["staging"]
    offset = yaml.safe_load((repo / "models" / model / "config.yaml").read_text())["deploy"]
    return f"http://127.0.0.1:{base['local']['port'] + offset['port_offset']}"


def answer(url: str) -> tuple[str, str]:
    """(x-model-tag, x-bentogate-release) of a prediction through a stable address."""
    spec = httpx.get(f"{url}/docs.json", timeout=30).json()
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["example"]
    r = httpx.post(f"{url}/predict", json=example, timeout=10)
    assert r.status_code == 200, r.text
    return r.headers["x-model-tag"], r.headers["x-bentogate-release"]


def history(repo: Path, model: str) -> list[dict]:
    path = repo / ".bentogate" / "deploy" / "staging" / model / "history.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def side_by_side(repo, env, bentos):
    """wine_a's first release, then wine_b's, then wine_a's second: all in staging."""
    for key in ("a1", "b1", "a2"):
        deploy(repo, env, bentos[key][0])
    return answer(address(repo, "wine_a")), answer(address(repo, "wine_b"))


def test_two_models_deployed_in_one_environment_answer_at_their_own_addresses(
    side_by_side, repo, env, bentos
):
    (a_tag, _), (b_tag, _) = side_by_side
    assert a_tag == bentos["a2"][1]
    assert b_tag == bentos["b1"][1]
    assert address(repo, "wine_a") != address(repo, "wine_b")
    assert [r["model_tag"] for r in history(repo, "wine_a")] == [bentos["a1"][1], bentos["a2"][1]]
    assert [r["model_tag"] for r in history(repo, "wine_b")] == [bentos["b1"][1]]
    status = make(repo, "status", env=env)
    assert status.returncode == 0, status.stderr
    for model, key in (("wine_a", "a2"), ("wine_b", "b1")):
        line = next(x for x in status.stdout.splitlines() if x.split()[:2] == ["staging", model])
        assert address(repo, model) in line and bentos[key][1] in line


def test_each_models_metrics_are_its_own_releases_after_a_third_deploy(side_by_side, repo, bentos):
    # Every release shared BentoML's one metrics folder, wiped by each start: after wine_a's
    # second release, wine_b's /metrics showed wine_a's series and none of its own.
    for model, own, other in (("wine_a", "a2", "b1"), ("wine_b", "b1", "a2")):
        metrics = httpx.get(f"{address(repo, model)}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert f'bentogate_predictions_total{{model_tag="{bentos[own][1]}"' in metrics.text
        assert f'model_tag="{bentos[other][1]}"' not in metrics.text


@pytest.fixture(scope="module")
def rolled_back(side_by_side, repo, env):
    return make(repo, "rollback", "ENV=staging", "MODEL=wine_a", env=env)


def test_rolling_back_one_model_restores_its_own_release_and_leaves_the_other_serving(
    rolled_back, side_by_side, repo, bentos
):
    _, b_before = side_by_side
    assert rolled_back.returncode == 0, rolled_back.stderr
    # wine_a is back on its first release; the latest release in staging (wine_b's) was not
    # what came back, and wine_b answers from the very same release as before.
    assert answer(address(repo, "wine_a"))[0] == bentos["a1"][1]
    assert answer(address(repo, "wine_b")) == b_before
    # Instant: wine_a's first release still ran as the previous one; it is stable again.
    assert [r["status"] for r in history(repo, "wine_a")] == ["live", "rolled_back"]
    assert [r["status"] for r in history(repo, "wine_b")] == ["live"]


def test_a_second_rollback_finds_no_earlier_release_of_that_model_and_never_takes_the_other(
    rolled_back, repo, env, bentos
):
    result = run(repo, "-m", "deploy", "rollback", "staging", "--model", "wine_a", env=env)
    assert result.returncode == 2
    assert "no earlier release to roll back to" in result.stderr
    assert answer(address(repo, "wine_a"))[0] == bentos["a1"][1]


def test_down_naming_a_model_stops_only_that_model_and_status_names_only_it(
    rolled_back, repo, env, bentos
):
    # `make down MODEL=wine_b` used to stop every model in every environment.
    shown = make(repo, "status", "ENV=staging", "MODEL=wine_b", env=env)
    assert [line.split()[:2] for line in shown.stdout.splitlines() if line[:1].isalpha()] == [
        ["staging", "wine_b"]
    ], shown.stdout
    result = make(repo, "down", "ENV=staging", "MODEL=wine_b", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("staging/wine_b: stopped ")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{address(repo, 'wine_b')}/readyz")
    assert answer(address(repo, "wine_a"))[0] == bentos["a1"][1]


def test_down_stops_both_models_and_their_routers(rolled_back, repo, env):
    pids = [r["pid"] for m in ("wine_a", "wine_b") for r in history(repo, m) if r["pid"]]
    result = make(repo, "down", env=env)
    assert result.returncode == 0, result.stderr
    for model in ("wine_a", "wine_b"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{address(repo, model)}/readyz")
    assert [p for p in pids if Path(f"/proc/{p}").exists() and not zombie(p)] == []


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
