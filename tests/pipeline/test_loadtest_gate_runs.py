"""The load-test gate for real: Locust against real servers on loopback, bounded in time."""

from __future__ import annotations

import json

import pytest
import yaml

from core.process import serving
from core.settings import ROOT
from models import runtimes
from tests.conftest import run_cli
from tests.fixtures.variants import FailsAfterStartup, Slow, register_like, trusting_config

pytestmark = pytest.mark.slow

# A short run: the figures, not their precision, are what these tests check. The bounds are wide
# enough for a busy machine (20 req/s offered; the default model answers in a few ms) and the
# failing variants miss them by far more than any noise. One round each: the passing run below
# measures in two, as the gate's own config does in three.
SHORT = {
    "load": {"users": 4, "spawn_rate": 4, "rate_per_user": 5, "duration_s": 4, "warmup_s": 1},
    "traffic": {"bodies": 200, "multi_record_share": 0.1, "multi_record_size": 5},
    "thresholds": ["p90 < 400ms", "p99 < 2000ms", "error_rate < 0.1%", "rps > 2"],
    "regression": {"p90_ratio": 1.25},
    "verdict": {"rounds": 1, "confirm_within": 0.5},  # the failing variants miss by far more
    "capacity": {"users": 4, "duration_s": 1},
}


def written(folder, cfg: dict):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return written(tmp_path_factory.mktemp("gate"), SHORT)


def variant(production_tag: str, wrap) -> str:
    inner = runtimes.load_registered(production_tag)
    return register_like(production_tag, wrap(inner), git_commit="test")


def gate(config, tag: str, tmp_path, *extra: str, env: dict[str, str] | None = None):
    return run_cli(
        "-m",
        "loadtests.gate",
        "--serve",
        "service:Predictor",
        "--model-tag",
        tag,
        "--config",
        str(config),
        "--out",
        str(tmp_path),
        *extra,
        env=env or {},
        timeout=240,
    )


def trusting(tmp_path) -> dict[str, str]:
    """The server trusts the test variants' wrapper types (the sales config never does)."""
    return {"BENTOGATE_CONFIG": str(trusting_config(tmp_path / "trusting.yaml"))}


def test_gate_passes_the_default_model_measured_in_rounds(production_tag, tmp_path):
    config = written(tmp_path / "config", {**SHORT, "verdict": {"rounds": 2, "confirm_within": 0}})
    result = gate(config, production_tag, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "### Load test: passed" in result.stdout
    for report in (
        "summary.json",
        "summary.md",
        "chart.svg",
        "candidate_r1.html",
        "candidate_r1_stats.csv",
        "candidate_r2.html",
    ):
        assert (tmp_path / report).exists(), report
    (attempt,) = json.loads((tmp_path / "summary.json").read_text())["rounds"]
    assert len(attempt["candidate"]) == 2
    assert "<polyline" in (tmp_path / "chart.svg").read_text()


def test_gate_fails_a_slowed_model_naming_the_threshold(production_tag, config, tmp_path):
    tag = variant(production_tag, lambda m: Slow(m, delay=0.8))
    result = gate(config, tag, tmp_path, env=trusting(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "FAIL p90 = " in result.stderr and "fails p90 < 400ms" in result.stderr


def test_gate_fails_a_model_that_returns_errors(production_tag, config, tmp_path):
    tag = variant(production_tag, FailsAfterStartup)
    result = gate(config, tag, tmp_path, env=trusting(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "fails error_rate < 0.1%" in result.stderr


@pytest.fixture(scope="module")
def running(production_tag, tmp_path_factory):
    """One server of the default model for the runs that need no server of their own."""
    cwd = tmp_path_factory.mktemp("running")
    env = {"BENTOGATE_MODEL_TAG": production_tag}
    with serving("service:Predictor", cwd=ROOT, env=env, log_path=cwd / "server.log") as server:
        yield server.url


def gate_url(config, url: str, tag: str, tmp_path, *extra: str):
    """The gate against a running service: same load, thresholds and reports, no server start."""
    return run_cli(
        *("-m", "loadtests.gate", "--url", url, "--model-tag", tag),
        *("--config", str(config), "--out", str(tmp_path), *extra),
        env={},
        timeout=240,
    )


def test_threshold_override_from_the_command_line_can_fail_the_default_model(
    production_tag, running, config, tmp_path
):
    result = gate_url(config, running, production_tag, tmp_path, "--thresholds", "p50<0.01ms")
    assert result.returncode == 1
    assert "fails p50 < 0.01ms" in result.stderr


def test_a_near_miss_is_measured_once_more_and_fails_only_when_the_rerun_fails_too(
    production_tag, running, tmp_path
):
    # Open loop: 20 req/s offered, so "rps > 30" is missed by about a third, within the 90% that
    # makes a near miss here, on any machine; the figures themselves are not checked.
    near = {**SHORT, "verdict": {"rounds": 1, "confirm_within": 0.9}}
    near["load"] = {**SHORT["load"], "duration_s": 2}
    config = written(tmp_path, near)
    result = gate_url(config, running, production_tag, tmp_path / "out", "--thresholds", "rps>30")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "near miss (rps = " in result.stderr and "runs once more" in result.stderr
    assert (tmp_path / "out" / "candidate_rerun_r1.html").exists()
    report = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(report["rounds"]) == 2
    assert report["first_attempt"]["accepted"] is False
    assert "The first run was a near miss (rps = " in result.stdout


def test_a_server_that_does_not_start_is_a_run_error_not_a_pass(config, tmp_path, production_tag):
    result = run_cli(
        "-m",
        "loadtests.gate",
        "--serve",
        "no_such_module:Nothing",
        "--model-tag",
        production_tag,
        "--config",
        str(config),
        "--out",
        str(tmp_path),
        env={},
    )
    assert result.returncode == 3
    assert "could not run" in result.stderr


def test_distributed_locust_with_two_workers_applies_the_same_thresholds(
    production_tag, running, config, tmp_path
):
    result = gate_url(config, running, production_tag, tmp_path, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("candidate_r1_samples.worker*.csv"))) == 2
