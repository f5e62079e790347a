"""The Makefile ships the model it is given: `make pipeline MODEL=...` passes it to every step, and
the per-model targets name it (`make -n` prints the commands without running them)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from core.settings import ROOT


def dry_run(*args: str) -> str:
    # MODEL and ENV unset: the Makefile's defaults, whatever the developer's shell exports.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("MODEL", "ENV")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def recipe(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    block = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert block, f"no recipe for {target}"
    return block.group(1).splitlines()


def test_every_pipeline_step_is_given_the_model():
    steps = [line for line in recipe("pipeline") if "$(call step," in line]
    assert [re.search(r"step,(\w+)", s).group(1) for s in steps] == [
        "train",
        "build",
        "loadtest",
        "deploy",
        "approve",
        "deploy",
    ]
    for step in steps:
        assert step.count("MODEL=$(MODEL)") == step.count("$(MAKE)") + 1, step


@pytest.mark.parametrize("target", ["rollback", "smoke", "unpin", "adopt"])
def test_per_model_operations_name_the_model(target):
    assert "--model wine" in dry_run(target, "ENV=staging", "MODEL=wine")
    assert "--model sales" in dry_run(target, "ENV=staging")


@pytest.mark.parametrize("target", ["deploy", "loadtest"])
def test_a_bento_of_another_model_is_refused_only_when_a_model_is_given(target):
    assert "--model wine" in dry_run(target, "ENV=staging", "MODEL=wine")
    assert "--model" not in dry_run(target, "ENV=staging")


@pytest.mark.parametrize("target", ["down", "status"])
def test_down_and_status_cover_everything_unless_an_environment_or_model_is_given(target):
    # `make down MODEL=wine` used to stop every model in every environment.
    assert dry_run(target).split()[-2:] == ["deploy", target]
    assert dry_run(target, "MODEL=wine").split()[-3:] == [target, "--model", "wine"]
    assert dry_run(target, "ENV=staging").split()[-2:] == [target, "staging"]
    assert dry_run(target, "ENV=staging", "MODEL=wine").split()[-4:] == [
        target,
        "staging",
        "--model",
        "wine",
    ]


def test_every_target_runs_with_telemetry_off():
    # --eval adds a target that prints what each recipe's environment holds.
    result = subprocess.run(
        ["make", "-s", "--eval", "_env: ; @echo $$BENTOML_DO_NOT_TRACK $$DO_NOT_TRACK", "_env"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.endswith("DO_NOT_TRACK")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.stdout.split() == ["true", "1"], result.stderr


def test_fresh_makes_the_pipeline_forget_a_stopped_runs_record():
    assert "deploy.resume start --fresh" in dry_run("pipeline", "FRESH=1")
    assert "--fresh" not in dry_run("pipeline")
