"""`python -m training` end to end, in subprocesses, each with its own model store."""

import json
from pathlib import Path

import pytest
import yaml

from core.settings import ROOT
from tests.conftest import copy_project, make, run_cli

WEAK = {"max_iter": 1, "learning_rate": 0.01}


def config_with(tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "models/sales/config.yaml").read_text())
    for key, value in changes.items():
        cfg[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def short_fit(folder: Path) -> Path:
    """The default config with 100 boosting rounds instead of 300: it passes the same gates."""
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "models/sales/config.yaml").read_text())["params"]
    return config_with(folder, params={**params, "max_iter": 100})


def store_models(env) -> list[Path]:
    return sorted(Path(env["BENTOML_HOME"]).glob("models/sales/*/model.yaml"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One full default run, shared by the tests that read its results."""
    tmp = tmp_path_factory.mktemp("trained")
    env = {
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOGATE_WORK_DIR": str(tmp / "work"),
        "BENTOGATE_REPORTS_DIR": str(tmp / "reports"),
    }
    result = run_cli("-m", "training", "run", env=env)
    return env, result


def test_run_trains_gates_and_registers_the_default_model(trained):
    _, result = trained
    assert result.returncode == 0, result.stderr
    tag = result.stdout.strip()
    assert tag.startswith("sales:")
    for name in ("load", "validate", "split", "train", "evaluate", "gate", "register"):
        assert f"[{name}] done in" in result.stderr


def test_registered_model_carries_labels_and_provenance(trained):
    env, _ = trained
    (model_yaml,) = store_models(env)
    info = yaml.safe_load(model_yaml.read_text())
    assert info["labels"]["stage"] == "candidate"
    assert info["labels"]["git_commit"]
    meta = info["metadata"]
    assert len(meta["data"]["sha256"]) == 64
    assert meta["seed"] == 42
    assert meta["params"]["max_iter"] == 300
    assert meta["sklearn_version"]
    assert meta["gate"]["accepted"] is True
    item_nbr = next(c for c in meta["feature_schema"]["columns"] if c["name"] == "item_nbr")
    assert len(item_nbr["categories"]) == 60  # learned from the training data


def test_run_writes_metrics_json_and_markdown(trained):
    env, _ = trained
    reports = Path(env["BENTOGATE_REPORTS_DIR"])
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["overall"]["nwrmsle"] < 0.8
    assert "BEVERAGES" in metrics["by_family"]
    assert "| nwrmsle |" in (reports / "metrics.md").read_text()


def test_two_runs_give_identical_metrics(trained, isolated_env):
    env, _ = trained
    again = run_cli("-m", "training", "run", env=isolated_env)
    assert again.returncode == 0, again.stderr
    first = json.loads((Path(env["BENTOGATE_WORK_DIR"]) / "sales/current/metrics.json").read_text())
    second = json.loads(
        (Path(isolated_env["BENTOGATE_WORK_DIR"]) / "sales/current/metrics.json").read_text()
    )
    assert first == second


def test_a_failed_run_leaves_the_last_good_run_current(trained, tmp_path):
    env, result = trained
    current = Path(env["BENTOGATE_WORK_DIR"]) / "sales" / "current"
    good_run, good_metrics = current.resolve(), (current / "metrics.json").read_bytes()
    weak = config_with(tmp_path, params=WEAK)
    env = {**env, "BENTOGATE_REPORTS_DIR": str(tmp_path / "reports")}

    failed = run_cli("-m", "training", "--config", str(weak), "run", env=env)

    assert failed.returncode == 1, failed.stderr
    assert current.resolve() == good_run
    assert (current / "metrics.json").read_bytes() == good_metrics
    candidate = run_cli("-m", "training", "candidate", env=env)
    assert candidate.stdout.strip() == result.stdout.strip()
    assert not any(p.suffix == ".pkl" for p in good_run.iterdir())  # no stage file is a pickle


def test_weak_model_fails_the_gate_naming_the_line_of_the_bound_and_is_not_registered(
    tmp_path, isolated_env
):
    config = config_with(tmp_path, params=WEAK)
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "nwrmsle:" in t)
    result = run_cli("-m", "training", "--config", str(config), "run", env=isolated_env)
    assert result.returncode == 1
    assert f"nwrmsle = 0.8227 fails nwrmsle <= 0.80 (set at {config}:{line})" in result.stderr
    assert "not registered" in result.stderr
    assert store_models(isolated_env) == []


def test_bad_data_file_stops_the_run_naming_column_and_rows(sales_raw, tmp_path, isolated_env):
    bad = sales_raw.head(500).copy()
    bad.loc[[10, 20], "family"] = "TOYS"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    result = run_cli("-m", "training", "--data", str(path), "run", env=isolated_env)
    assert result.returncode == 2
    assert "column 'family': unknown category ('TOYS') in 2 rows (11, 21)" in result.stderr
    assert "Traceback" not in result.stderr
    assert store_models(isolated_env) == []


def test_bad_config_exits_2_naming_the_line(tmp_path, isolated_env):
    path = config_with(tmp_path, split={"validation_weeks": "eight"})
    result = run_cli("-m", "training", "--config", str(path), "run", env=isolated_env)
    assert result.returncode == 2
    assert "split.validation_weeks" in result.stderr
    assert "Traceback" not in result.stderr


def test_promote_then_a_worse_candidate_fails_the_production_ratchet(tmp_path, isolated_env):
    # A shorter fit than the default's 300 rounds for production (the ratchet compares whatever
    # production is); 8 rounds stay clearly worse than 100.
    short = short_fit(tmp_path / "short")
    first = run_cli("-m", "training", "--config", str(short), "run", env=isolated_env)
    assert first.returncode == 0, first.stderr
    promoted = run_cli("-m", "training", "promote", env=isolated_env)
    assert promoted.returncode == 0, promoted.stderr
    assert "is now production" in promoted.stdout
    # Good enough for the absolute threshold, but clearly worse than production.
    worse = config_with(tmp_path, params={"max_iter": 8, "learning_rate": 0.1})
    result = run_cli("-m", "training", "--config", str(worse), "run", env=isolated_env)
    assert result.returncode == 1, result.stderr
    assert "meets nwrmsle <= 0.80" in result.stderr
    assert "ratchet: nwrmsle = " in result.stderr and "worse than production" in result.stderr
    listing = run_cli("-m", "training", "models", env=isolated_env)
    rows = [line for line in listing.stdout.splitlines() if line.startswith("sales:")]
    assert len(rows) == 1 and "production" in rows[0] and "compiled" in rows[0]
    assert "compiled: admitted: reproduces the predict path on every validation row" in (
        listing.stdout
    )


def test_each_stage_runs_alone_in_order(tmp_path, isolated_env):
    # A shorter fit than the default's: what is tested is each stage reading the one before's
    # output, which the full default run of `trained` above does not do.
    short = short_fit(tmp_path)
    for name in ("load", "validate", "split", "train", "evaluate", "gate", "register"):
        result = run_cli("-m", "training", "--config", str(short), name, env=isolated_env)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    assert len(store_models(isolated_env)) == 1


def test_listing_models_without_naming_one_says_it_lists_the_default_and_how_to_choose(
    isolated_env,
):
    default = run_cli("-m", "training", "models", env=isolated_env)
    named = run_cli("-m", "training", "--model", "cancer", "models", env=isolated_env)

    assert default.returncode == 0, default.stderr
    said = default.stderr.splitlines()[0]
    assert said.startswith("listing sales, the default model (MODEL=<name> for another: ")
    assert "cancer" in said
    assert not any(line.startswith("listing") for line in default.stdout.splitlines())
    assert named.stdout == "no models registered for 'cancer'\n"


def test_a_stage_without_its_input_says_which_to_run_first(isolated_env):
    result = run_cli("-m", "training", "train", env=isolated_env)
    assert result.returncode == 2
    assert "train.parquet not found: run the stage that writes it first" in result.stderr


def test_bad_estimator_parameter_exits_2_naming_line_and_field_before_reading_data(
    tmp_path, isolated_env
):
    # Every kind of parameter mistake is covered in tests/code/test_parameters.py.
    path = config_with(tmp_path, params={"max_iter": "lots"})
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "max_iter:" in t)
    result = run_cli("-m", "training", "--config", str(path), "run", env=isolated_env)
    assert result.returncode == 2
    assert (
        f"error: {path}:{line}: params.max_iter: must be an int in the range [1, inf); got 'lots'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "[load]" not in result.stderr  # stopped before any data was read


def _package(name: str, replace: str, module: str) -> dict[str, str]:
    """A model package: the sales package with one hook replaced by this module's code."""
    return {
        "config.yaml": (ROOT / "models/sales/config.yaml").read_text(),
        "hook.py": module,
        "__init__.py": "import dataclasses\nfrom pathlib import Path\n\n"
        f"from models.{name} import hook\nfrom models.sales import SPEC as SALES\n\n"
        f"SPEC = dataclasses.replace(SALES, name={name!r}, {replace}=hook.{replace}, "
        "config_path=Path(__file__).with_name('config.yaml'))\n",
    }


BROKEN_PACKAGES = {
    # name: (files, what the error names)
    "raises": (
        _package(
            "raises",
            "build_estimator",
            "def build_estimator(params, seed):\n    depth = params['max_iter']\n    return depth / 0\n",
        ),
        "models/raises/hook.py:3: the raises estimator failed",
    ),
    "noimport": (
        _package("noimport", "build_estimator", "from sklearn.ensemble import NoSuchRegressor\n"),
        "models/noimport/hook.py:1: model package 'noimport' cannot be imported: ImportError",
    ),
    "badclean": (
        _package("badclean", "clean", "def clean(df):\n    return df[df['no_such_column'] > 0]\n"),
        "models/badclean/hook.py:2: KeyError: 'no_such_column'",
    ),
}


@pytest.fixture(scope="module")
def broken_repo(tmp_path_factory):
    """A project copy with model packages whose own code fails."""
    repo = copy_project(tmp_path_factory.mktemp("repo"))
    for name, (files, _) in BROKEN_PACKAGES.items():
        (repo / "models" / name).mkdir()
        for file, text in files.items():
            (repo / "models" / name / file).write_text(text)
    return repo


@pytest.mark.parametrize("name", list(BROKEN_PACKAGES))
def test_model_package_whose_own_code_fails_exits_2_naming_its_line(
    broken_repo, isolated_env, name
):
    result = run_cli("-m", "training", "--model", name, "run", env=isolated_env, cwd=broken_repo)
    assert result.returncode == 2, result.stderr
    assert BROKEN_PACKAGES[name][1] in result.stderr
    assert "Traceback" not in result.stderr


def test_unexpected_failure_exits_3_with_the_traceback_never_1(isolated_env):
    # A corrupt work file is no mistake of the user's config or data: a bug report needs the trace.
    work = Path(isolated_env["BENTOGATE_WORK_DIR"]) / "sales" / "current"
    work.mkdir(parents=True)
    (work / "train.parquet").write_bytes(b"not parquet")
    result = run_cli("-m", "training", "train", env=isolated_env)
    assert result.returncode == 3
    assert "Traceback" in result.stderr
    assert "unexpected failure (a bug, not a rejection)" in result.stderr


@pytest.mark.parametrize(
    ("params", "code", "says"),
    [(WEAK, 1, "quality gate failed"), ({"max_iter": "lots"}, 2, "params.max_iter")],
    ids=["rejected", "invalid"],
)
def test_make_train_carries_the_steps_own_exit_code(tmp_path, isolated_env, params, code, says):
    env = {**isolated_env, "BENTOGATE_CONFIG": str(config_with(tmp_path, params=params))}
    result = make(ROOT, "train", env=env)
    assert result.returncode == 2  # GNU make's own status for any failed recipe
    assert says in result.stderr
    assert result.stderr.rstrip().endswith(f"train] Error {code}")
