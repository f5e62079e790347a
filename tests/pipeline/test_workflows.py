"""The workflows keep their promises: locked down, every step a make target, production gated by
an environment whose reviewers approve, deploys never cancelled midway."""

from __future__ import annotations

import re

import pytest
import yaml

from core.settings import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def load(path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


@pytest.fixture(scope="module")
def deliver() -> dict:
    return load(ROOT / ".github" / "workflows" / "deliver.yml")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_locked_down(path):
    wf = load(path)
    assert wf["permissions"] == {}
    assert "pull_request_target" not in wf["on"]
    for name, job in wf["jobs"].items():
        assert "timeout-minutes" in job, name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_every_delivery_step_runs_make_targets(deliver):
    for name, job in deliver["jobs"].items():
        for step in job["steps"]:
            if "run" in step and "gh run" not in step["run"]:
                assert step["run"].lstrip().startswith("make "), (name, step["run"])


def test_delivery_runs_the_stages_in_order(deliver):
    jobs = deliver["jobs"]
    assert jobs["build"]["needs"] == "train"
    assert jobs["loadtest"]["needs"] == "build"
    assert jobs["staging"]["needs"] == "loadtest"
    assert set(jobs["production"]["needs"]) == {"loadtest", "staging"}
    assert jobs["notify"]["if"] == "always()"


def test_production_waits_for_the_production_environment_and_is_never_cancelled(deliver):
    for name in ("staging", "production"):
        assert deliver["jobs"][name]["concurrency"]["cancel-in-progress"] is False
    assert deliver["jobs"]["production"]["environment"]["name"] == "production"


def test_delivery_runs_on_push_schedule_and_dispatch(deliver):
    assert deliver["on"]["push"]["branches"] == ["main"]
    assert deliver["on"]["schedule"]
    assert "workflow_dispatch" in deliver["on"]
