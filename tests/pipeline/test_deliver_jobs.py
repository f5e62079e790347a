"""deliver.yml run job by job (tests/fixtures/actions.py): each job in a fresh clone standing for a
fresh runner, given only what the jobs before it uploaded and output, twice: on an empty history,
then against the first run's production release served by a stand-in `gh`. GitHub itself cannot
run here: its artifact storage, `gh` and the attestation signer are stand-ins (mocked), the rest
(make targets, Locust, nginx, the Bentos) runs for real on loopback.

The repository under test is a copy of this working tree committed to a fresh git repository,
with a short load test, a shorter fit and free ports for its environments. The production job's
host keeps its state (model store, deploy folder) between runs, as a production host does; every
other job starts empty. A third run, after the second's production release was rewritten with its
manifest, stops at the attestation check."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from core.process import free_port
from core.settings import ROOT
from tests.conftest import copy_project, relax_loadtest, shorten_sales_fit
from tests.fixtures.actions import WorkflowRun, failed_logs

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@invalid", "-c", "commit.gpgsign=false"]


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The repository the runs check out: this working tree, short load test, free ports."""
    dest = tmp_path_factory.mktemp("deliver-jobs") / "origin"
    copy_project(dest)
    (dest / ".venv").unlink()  # setup-python provides it on each runner
    relax_loadtest(dest)
    shorten_sales_fit(dest)
    cfg = yaml.safe_load((dest / "deploy" / "config.yaml").read_text())
    for env in cfg["environments"].values():
        env["local"].update(port=free_port(), ready_timeout_s=90, drain_s=1)
    (dest / "deploy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([*GIT, "init", "--quiet", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "--quiet", "-m", "under test"], cwd=dest, check=True)
    return dest


@pytest.fixture(scope="module")
def github(origin) -> Path:
    return origin.parent / "github"


@pytest.fixture(scope="module")
def production_host(origin) -> dict[str, str]:
    """The production job's lasting state: its model store and its deploy folder."""
    host = origin.parent / "production-host"
    return {
        "BENTOML_HOME": str(host / "bentoml"),
        "BENTOGATE_DEPLOY_DIR": str(host / "deploy"),
    }


@pytest.fixture(scope="module")
def production_url(origin) -> str:
    cfg = yaml.safe_load((origin / "deploy" / "config.yaml").read_text())
    return f"http://127.0.0.1:{cfg['environments']['production']['local']['port']}"


def down(workspace: Path, extra: dict[str, str]) -> None:
    """`make down` where a job may have left services: by the pids it recorded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENTOML_", "BENTOGATE_"))}
    subprocess.run(
        ["make", "-s", "down"],
        cwd=workspace,
        env={**env, **extra},
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def deliver(origin, github, production_host):
    """Runs deliver.yml on the stand-in GitHub; at the end every service a run started is
    stopped, whatever happened."""
    done: list[WorkflowRun] = []

    def run() -> WorkflowRun:
        wf = WorkflowRun(
            workflow=origin / ".github" / "workflows" / "deliver.yml",
            origin=origin,
            github=github,
            venv=ROOT / ".venv",
            host_env={"production": production_host},
        )
        done.append(wf)
        wf.execute()
        return wf

    try:
        yield run
    finally:
        stopped: set[Path] = set()  # one `make down` per deploy folder a job may have used
        for wf in done:
            for name, result in wf.results.items():
                ws = result.workspace
                if ws is None or not (ws / "Makefile").exists():
                    continue
                extra = production_host if name == "production" else {}
                state = Path(extra.get("BENTOGATE_DEPLOY_DIR", ws / ".bentogate" / "deploy"))
                if state.exists() and state not in stopped:
                    stopped.add(state)
                    down(ws, extra)


@pytest.fixture(scope="module")
def runs(deliver) -> tuple[WorkflowRun, WorkflowRun]:
    """The first run on an empty history, the second against the first's production."""
    first = deliver()
    assert all(r.result == "success" for r in first.results.values()), failed_logs(first.results)
    second = deliver()
    assert all(r.result == "success" for r in second.results.values()), failed_logs(second.results)
    return first, second


@pytest.fixture(scope="module")
def tampered(runs, deliver, github) -> WorkflowRun:
    """A third run after someone rewrote the second's production release and its manifest."""
    artifact = github / "runs" / str(runs[1].run_id) / "artifacts" / "production-release"
    model = artifact / "model.bentomodel"
    model.write_bytes(model.read_bytes() + b"payload")
    manifest = json.loads((artifact / "release.json").read_text())
    manifest["files"]["model.bentomodel"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (artifact / "release.json").write_text(json.dumps(manifest))
    return deliver()


def serving(url: str) -> str:
    spec = httpx.get(f"{url}/docs.json", timeout=30).json()
    example = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["example"]
    response = httpx.post(f"{url}/predict", json=example, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["model"])


def test_every_job_of_both_runs_succeeds_each_on_a_fresh_clone_github_mocked(runs):
    for wf in runs:
        assert {n: r.result for n, r in wf.results.items()} == {
            "train": "success",
            "build": "success",
            "loadtest": "success",
            "staging": "success",
            "production": "success",
            "notify": "success",
        }
        workspaces = {r.workspace for r in wf.results.values()}
        assert len(workspaces) == len(wf.results)


def test_the_first_run_has_no_production_to_compare_with_and_the_second_has_the_first_github_mocked(
    runs,
):
    first, second = runs
    assert "No production release yet" in first.results["train"].log
    assert "No production release yet" not in second.results["train"].log
    assert "attested: build/production/" in second.results["train"].log
    assert "attested: build/production/" in second.results["loadtest"].log


def test_the_build_gets_the_model_the_train_job_output_github_mocked(runs):
    for wf in runs:
        tag = wf.results["train"].outputs["model_tag"]
        assert tag.startswith("sales:")
        bento = json.loads(
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "bentoml"), "list", "-o", "json"],
                env={
                    **os.environ,
                    "BENTOML_HOME": str(wf.results["build"].workspace / ".bentogate" / "bentoml"),
                },
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert [b["tag"] for b in bento]
        assert (wf.results["build"].workspace / "build" / "bento-tag").read_text().strip()


def test_the_second_production_job_ends_with_its_new_model_at_the_stable_address_github_mocked(
    runs, production_url
):
    old, new = (wf.results["train"].outputs["model_tag"] for wf in runs)
    assert old != new
    assert serving(production_url) == new
    summary = runs[1].results["production"].summary
    assert f"production: {new} (" in summary
    assert f"serving at {production_url}" in summary


def test_the_reviewer_evidence_of_each_run_is_on_its_summary_github_mocked(runs):
    first, second = runs
    for wf in runs:
        evidence = wf.results["loadtest"].summary
        assert "## Release evidence:" in evidence
        assert f"`{wf.results['train'].outputs['model_tag']}` (stage candidate" in evidence
        assert "**Load test: passed**" in evidence
    assert "none (first release)" in first.results["loadtest"].summary
    assert first.results["train"].outputs["model_tag"] in second.results["loadtest"].summary


def test_a_rewritten_production_release_stops_the_next_run_at_its_attestation_github_mocked(
    runs, tampered, production_url, github
):
    results = {n: r.result for n, r in tampered.results.items()}
    assert results == {
        "train": "failure",
        "build": "skipped",
        "loadtest": "skipped",
        "staging": "skipped",
        "production": "skipped",
        "notify": "success",
    }
    assert (
        "error: build/production/model.bentomodel: no valid attestation from this repository's"
        " deliver.yml" in tampered.results["train"].log
    )
    assert "delivery failure" in tampered.results["notify"].log
    assert json.loads((github / "runs.json").read_text())[-1]["conclusion"] == "failure"
    assert serving(production_url) == runs[1].results["train"].outputs["model_tag"]
