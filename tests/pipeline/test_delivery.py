"""The delivery pipeline for real, in a copy of the project: `make pipeline` twice (the second run
with a changed model, stopped once by an impossible load-test bound and resumed there, a client
polling production throughout the resumed run), then a release whose model fails
readiness, `make rollback` and `make down`. Servers, router and Locust all run on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from core.process import free_port
from core.settings import ROOT
from tests.conftest import copy_project, make, relax_loadtest, shorten_sales_fit
from tests.fixtures import polling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the project's files with short load tests and free ports for its environments."""
    dest = tmp_path_factory.mktemp("delivery") / "repo"
    copy_project(dest)
    relax_loadtest(dest)
    shorten_sales_fit(dest)  # both runs still train and pass the quality gate and the ratchet
    cfg = yaml.safe_load((dest / "deploy" / "config.yaml").read_text())
    for env in cfg["environments"].values():
        env["local"].update(port=free_port(), ready_timeout_s=120, drain_s=1)
    (dest / "deploy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.fixture(scope="module")
def env(repo) -> dict[str, str]:
    return {"BENTOML_HOME": str(repo / ".bentogate" / "bentoml"), "APPROVE": "1"}


@pytest.fixture(scope="module")
def production_url(repo) -> str:
    port = yaml.safe_load((repo / "deploy" / "config.yaml").read_text())["environments"][
        "production"
    ]["local"]["port"]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module", autouse=True)
def stop_everything(repo, env):
    yield
    make(repo, "down", env=env)


def deploy_cli(repo: Path, *args: str, env: dict[str, str]):
    """`python -m deploy ...` in the copy: make turns every failure into exit 2; this keeps ours."""
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "deploy", *args],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to reap it (it holds no port, no memory)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def history(repo: Path, name: str = "production") -> list[dict]:
    return json.loads(
        (repo / ".bentogate" / "deploy" / name / "sales" / "history.json").read_text()
    )


class Poller(threading.Thread):
    """A client calling production's predict API every 20 ms; counts answers by model."""

    def __init__(self, url: str, example: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.example = url, example
        self.models: Counter[str] = Counter()
        self.failures: list[str] = []
        self.closed_idle = 0  # resent after nginx closed an idle connection (polling.py)
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 400  # bounded even if the test never stops it
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r, resent = polling.post(client, f"{self.url}/predict", json=self.example)
                    self.closed_idle += resent
                    if r.status_code == 200:
                        self.models[r.json()["model"]] += 1
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)

    def __enter__(self) -> Poller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(15)


def example_request(url: str) -> dict:
    spec = httpx.get(f"{url}/docs.json", timeout=30).json()
    return spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["example"]


def serving_model(url: str) -> str:
    return httpx.post(f"{url}/predict", json=example_request(url), timeout=30).json()["model"]


@pytest.fixture(scope="module")
def first_run(repo, env, production_url):
    result = make(repo, "pipeline", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def pipeline_record(repo: Path) -> dict:
    return json.loads((repo / ".bentogate" / "run" / "sales" / "pipeline.json").read_text())


@pytest.fixture(scope="module")
def stopped_at_the_load_test(first_run, repo, env):
    """The second delivery, a changed model, first stopped by a bound no service meets."""
    config = repo / "models" / "sales" / "config.yaml"
    config.write_text(config.read_text().replace("learning_rate: 0.08", "learning_rate: 0.1"))
    result = make(repo, "pipeline", "THRESHOLDS=p50<0.001ms", env=env)
    return result, pipeline_record(repo)


@pytest.fixture(scope="module")
def second_run(stopped_at_the_load_test, repo, env, production_url):
    """The same delivery run again as it is: it resumes at the load test."""
    before = serving_model(production_url)
    with Poller(production_url, example_request(production_url)) as poller:
        result = make(repo, "pipeline", env=env)
        time.sleep(0.5)
    return before, result, poller


def production_model(repo: Path, env: dict[str, str]) -> str:
    """The registry's production model, asked in the copy's own store."""
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "training", "production"],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return out.stdout.strip()


def test_pipeline_from_a_fresh_copy_ends_with_the_model_serving_in_production(
    first_run, repo, env, production_url
):
    assert "Quality gate: passed" in first_run.stdout
    assert "### Load test: passed" in first_run.stdout
    assert f"serving at {production_url}" in first_run.stdout
    response = httpx.post(
        f"{production_url}/predict", json=example_request(production_url), timeout=30
    )
    assert response.status_code == 200
    assert response.headers["x-bentogate-release"] == "r0001"
    assert response.json()["model"] == production_model(repo, env)
    assert history(repo, "staging")[-1]["status"] == "live"
    # Every prediction of every release is logged, with the model that made it.
    time.sleep(0.2)
    logged = (
        repo / ".bentogate" / "deploy" / "production" / "sales" / "predictions.jsonl"
    ).read_text()
    last = json.loads(logged.splitlines()[-1])
    assert last["model"] == response.json()["model"]
    assert last["outputs"]["predictions"] == response.json()["predictions"]


def test_a_second_run_with_a_changed_model_replaces_it_without_a_failed_request(
    second_run, repo, env, production_url
):
    before, result, poller = second_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = serving_model(production_url)
    assert after != before
    assert after == production_model(repo, env)
    assert poller.failures == []
    assert poller.models[before] > 0 and poller.models[after] > 0
    assert [r["status"] for r in history(repo)] == ["superseded", "live"]
    # The second run was compared with the first: the ratchet and the load test saw production.
    assert "vs production `" in result.stdout


def test_a_pipeline_stopped_by_the_load_test_resumes_there_without_retraining_or_rebuilding(
    stopped_at_the_load_test, second_run, repo
):
    stopped, record = stopped_at_the_load_test
    assert stopped.returncode != 0
    assert "fails p50 < 0.001ms" in stopped.stderr
    assert record["reached"] == "loadtest"
    assert record["steps"]["loadtest"]["status"] == "failed"
    _, resumed, _ = second_run
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    candidate, bento = record["steps"]["train"]["candidate"], record["steps"]["build"]["bento"]
    assert (
        f"[pipeline] train: skipped: candidate {candidate} is still in the store" in resumed.stdout
    )
    assert f"[pipeline] build: skipped: Bento {bento} of {candidate}" in resumed.stdout
    assert re.search(r"\[pipeline\] (train|build): \d+ ms", resumed.stdout) is None  # not run
    after = pipeline_record(repo)
    assert after["steps"]["train"]["candidate"] == candidate
    assert after["steps"]["build"]["bento"] == bento
    assert after["steps"]["loadtest"]["status"] == "done"
    assert after["complete"] is True
    assert (repo / "build" / "bento-tag").read_text().strip() == bento


@pytest.fixture(scope="module")
def broken_bento(second_run, repo, env) -> str:
    """A Bento whose model does not reproduce its recorded golden prediction: never ready."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "tests.fixtures.broken_model"],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tag = result.stdout.strip().splitlines()[-1]
    built = make(repo, "build", f"MODEL_TAG={tag}", env=env)
    assert built.returncode == 0, built.stderr
    return (repo / "build" / "bento-tag").read_text().strip()


def test_a_release_whose_model_fails_readiness_never_takes_traffic(
    broken_bento, repo, env, production_url
):
    live = serving_model(production_url)
    with Poller(production_url, example_request(production_url)) as poller:
        result = deploy_cli(repo, "deploy", "production", broken_bento, env=env)
    assert result.returncode == 1
    assert "not released: readiness" in result.stderr
    assert "keeps serving" in result.stderr
    assert poller.failures == []
    assert set(poller.models) == {live}
    assert history(repo)[-1]["status"] == "failed"
    assert production_model(repo, env) == live


def test_rollback_restores_the_previous_release(repo, env, production_url, broken_bento):
    first, second = history(repo)[:2]
    result = make(repo, "rollback", "ENV=production", env=env)
    assert result.returncode == 0, result.stderr
    assert serving_model(production_url) == first["model_tag"]
    assert production_model(repo, env) == first["model_tag"]
    # Instant: the previous release still ran and is stable again, nothing restarted.
    statuses = {r["id"]: r["status"] for r in history(repo)}
    assert statuses[first["id"]] == "live"
    assert statuses[second["id"]] == "rolled_back"
    assert "(swap, no restart)" in result.stdout + result.stderr


def test_rollback_with_nothing_earlier_is_refused_and_changes_nothing(repo, env, production_url):
    live = serving_model(production_url)
    result = deploy_cli(repo, "rollback", "production", env=env)
    assert result.returncode == 2
    assert "no earlier release to roll back to" in result.stderr
    assert serving_model(production_url) == live


def test_evidence_names_provenance_and_both_gates(first_run, repo):
    evidence = (repo / "reports" / "evidence.md").read_text()
    for expected in (
        "| commit |",
        "sha256",
        "Quality gate: passed",
        "**Load test: passed**",
        "| p90 |",
    ):
        assert expected in evidence


def test_approval_without_a_terminal_or_approve_is_refused(repo, env):
    result = deploy_cli(repo, "approve", "production", env={**env, "APPROVE": ""})
    assert result.returncode == 1
    assert "approval for production needed" in result.stderr


def test_deploying_a_bento_that_does_not_exist_changes_nothing(repo, env, production_url):
    live = serving_model(production_url)
    result = deploy_cli(repo, "deploy", "production", "sales_api:nosuchversion", env=env)
    assert result.returncode == 2
    assert "no Bento 'sales_api:nosuchversion'" in result.stderr
    assert serving_model(production_url) == live


def test_down_stops_every_service_the_local_target_started(repo, env, production_url):
    pids = [r["pid"] for name in ("staging", "production") for r in history(repo, name)]
    result = make(repo, "down", env=env)
    assert result.returncode == 0, result.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{production_url}/readyz")
    assert [p for p in pids if p and running(p)] == []
