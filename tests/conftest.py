"""Shared fixtures. The whole session uses its own BentoML home, never the developer's store."""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

# Before anything imports bentoml: it reads BENTOML_HOME once.
_HOME = tempfile.mkdtemp(prefix="bentogate-test-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["BENTOML_HOME"] = _HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# One OpenMP thread in the test processes and every command they start, as the service runs
# (service.py): on 2 cores shared by 2 xdist workers and their servers, HistGradientBoosting's
# threads mostly wait for each other (measured beside a busy core: a 100-round sales fit 7-19 s
# with threads, 0.6-1.3 s with one; 64 one-row predictions 3-6 s against 0.4-0.9 s). Set before
# scikit-learn loads its OpenMP runtime, which reads it once. An explicit setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from core.process import PORTS_ENV, port_range  # noqa: E402 (imports no bentoml)


def worker_ports(worker: str, count: int, low: int, high: int) -> str:
    """The part of [low, high) that xdist worker `worker` ("gw<i>") of `count` picks ports from."""
    index, share = int(worker.removeprefix("gw")), (high - low) // count
    return f"{low + index * share}-{low + (index + 1) * share}"


# Each xdist worker picks server ports from its own part of the range, and so do the commands it
# starts: a port one worker has picked, to bind seconds or minutes later, is never the other's pick.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and PORTS_ENV not in os.environ:
    os.environ[PORTS_ENV] = worker_ports(
        os.environ["PYTEST_XDIST_WORKER"],
        int(os.environ["PYTEST_XDIST_WORKER_COUNT"]),
        *port_range(),
    )

import bentoml  # noqa: E402

from core import registry  # noqa: E402
from core.project import copy_project as copy_project  # noqa: E402  (the tests import it from here)
from core.settings import ROOT, Settings  # noqa: E402
from models import get_spec  # noqa: E402
from models.contract import ModelSpec  # noqa: E402
from training import pipeline  # noqa: E402
from training.split import time_split  # noqa: E402
from training.train import train  # noqa: E402
from training.validate import validate  # noqa: E402

# `make test` runs each file whole on one of two xdist workers (--dist loadfile), handed out in the
# order below (pytest_configure turns off xdist's own order, by number of tests, which started
# these few-test files last: one worker ended alone on them while the other idled). Longest first,
# the other files fill in after. Per-file totals (setup + calls) of `make test` on a quiet machine,
# 2026-12-06 23:30.
LONGEST_FIRST = (
    "tests/pipeline/test_delivery.py",  # ~120 s
    "tests/pipeline/test_deliver_jobs.py",  # ~100 s
    "tests/pipeline/test_loadtest_gate_runs.py",  # ~80 s
    "tests/pipeline/test_training_cli.py",  # ~70 s
    "tests/pipeline/test_canary.py",  # ~55 s
    "tests/pipeline/test_bring_your_own_model.py",  # ~40 s
    "tests/pipeline/test_router.py",  # ~35 s
    "tests/pipeline/test_monitor_rollback.py",  # ~30 s
    "tests/pipeline/test_side_by_side.py",  # ~30 s
    "tests/pipeline/test_build_refuses_a_missing_dependency.py",  # ~25 s
    "tests/batch/test_jobs.py",  # ~25 s
    "tests/service/test_bento_e2e.py",  # ~25 s
    "tests/batch/test_score.py",  # ~20 s
    "tests/code/test_monitor_classifier.py",  # ~15 s
    "tests/pipeline/test_release.py",  # ~15 s
    "tests/pipeline/test_predict_path.py",  # ~15 s
    "tests/code/test_monitor_store.py",  # ~15 s
)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # xdist's --no-loadscope-reorder
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in its order; the rest after, as collected. A stable sort
    on the file alone: each file's tests keep their order, every worker collects the same order."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def sales_spec() -> ModelSpec:
    return get_spec("sales")


@pytest.fixture(scope="session")
def sales_raw(sales_spec: ModelSpec) -> pd.DataFrame:
    return sales_spec.default_data(42)


@pytest.fixture(scope="session")
def sales_clean(sales_spec: ModelSpec, sales_raw: pd.DataFrame) -> pd.DataFrame:
    return sales_spec.clean(validate(sales_raw, sales_spec.schema)).reset_index(drop=True)


@pytest.fixture(scope="session")
def sales_split(sales_clean: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return time_split(sales_clean, "date", 8)


@pytest.fixture(scope="session")
def sales_model(sales_spec, sales_split):
    return train(sales_spec, sales_split[0], {"max_iter": 100}, 42)


def bounded(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float):
    """Run `cmd` in a process group of its own, output captured. Past `timeout` the whole group is
    killed (its own pid is the group's id: a training run started by make goes too, not only make)
    and the test fails saying so first, with the end of what the command wrote."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{' '.join(cmd)}: still running after {timeout:.0f} s, stopped; its last output:\n"
            f"{out[-2000:]}{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_cli(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 900):
    """Run a project command in a subprocess with its own BentoML home and work directories. The
    bound is generous: a training run takes ~20 s on an idle machine and over 5 minutes on one
    loaded 7-fold (measured under `make test-busy` beside other suites)."""
    return bounded([sys.executable, *args], cwd=cwd, env=env, timeout=timeout)


def make(repo: Path, *args: str, env: dict[str, str], timeout: float = 1200):
    """`make -s ARGS` in a project copy, with extra environment. The bound is generous: a whole
    pipeline (train, build, load test, two deploys) takes 2 minutes on an idle 2-core machine and
    several times that on a busy one; a hung step still ends."""
    return bounded(["make", "-s", *args], cwd=repo, env=env, timeout=timeout)


def swap_in_a_forest(package: Path) -> None:
    """The estimator statement of a scaffolded package, and nothing else, becomes scikit-learn's
    RandomForest of its task: the one edit a data scientist makes (forests take NaN and need no
    trust entry)."""
    estimator = package / "estimator.py"
    code, swapped = re.subn(
        r"model = ensemble\.HistGradientBoosting(Classifier|Regressor)\(.*?\)\n",
        r"model = ensemble.RandomForest\1(random_state=seed, **params)\n",
        estimator.read_text(),
        flags=re.DOTALL,
    )
    assert swapped == 1, code
    estimator.write_text(code)


# The pipeline tests' load test: short, with limits no busy machine misses. These tests protect
# delivery, not speed (tests/pipeline/test_loadtest_gate_runs.py shows each threshold failing).
RELAXED_LOADTEST = {
    "load": {"users": 2, "spawn_rate": 2, "rate_per_user": 5, "duration_s": 3, "warmup_s": 1},
    "traffic": {"bodies": 100, "multi_record_share": 0.1, "multi_record_size": 5},
    "thresholds": ["p90 < 5000ms", "error_rate < 1%"],
    "regression": {"p90_ratio": 1000.0},  # still run against production
    "verdict": {"rounds": 1, "confirm_within": 0},
    "capacity": {"users": 2, "duration_s": 1},
}


def relax_loadtest(project: Path) -> None:
    """A project copy's load-test gate runs RELAXED_LOADTEST."""
    (project / "loadtests" / "config.yaml").write_text(yaml.safe_dump(RELAXED_LOADTEST))


def shorten_sales_fit(project: Path) -> None:
    """The copied project's sales model fits 100 boosting rounds instead of its 300: the same
    gates and ratchet pass, in a third of the time, for tests of the delivery, not the model."""
    config = project / "models" / "sales" / "config.yaml"
    text = config.read_text()
    assert "max_iter: 300" in text, "the default sales config changed: update this helper"
    config.write_text(text.replace("max_iter: 300", "max_iter: 100"))


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess that must not see any other test's models or files."""
    return {
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOGATE_WORK_DIR": str(tmp_path / "work"),
        "BENTOGATE_REPORTS_DIR": str(tmp_path / "reports"),
    }


@pytest.fixture(scope="session")
def production_tag(tmp_path_factory) -> str:
    prod = registry.production("sales")
    if prod is not None:
        return str(prod.tag)
    # Each xdist worker has a model store of its own (BENTOML_HOME above): the first to get here
    # trains and exports the model, the other imports it instead of training a second one beside
    # it (~70 s each on 2 shared cores).
    # The session's own folder: xdist workers' base folders share their parent, a run without
    # xdist has its own (its parent outlives the session and would hand a later one a stale model).
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with (shared / "production-model.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        exported = shared / "production-model.bentomodel"
        if exported.exists():
            return str(bentoml.models.import_model(str(exported)).tag)
        tmp = tmp_path_factory.mktemp("service-model")
        ctx = pipeline.Context.from_settings(
            Settings(work_dir=tmp / "work", reports_dir=tmp / "reports")
        )
        tag = pipeline.run_all(ctx)
        registry.promote(tag)
        bentoml.models.export_model(tag, str(exported))
        return tag
