"""Scaffold a new model package from a dataset.

`make new-model NAME=... DATA=... TARGET=... TASK=classification|regression`

Writes models/<name>/ with a data contract inferred from the data (kinds, non-negative bounds,
categories), a generic scikit-learn Pipeline, and a config with starter thresholds measured on the
data (`baseline`). The result trains and serves as it is; the data scientist then refines the parts
marked FILL IN.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from core import cli
from models import MODELS_DIR, available

MAX_CATEGORIES = 50

log = logging.getLogger("bentogate.scaffold")

INIT = '''"""{name}: {task} on {data}. Scaffolded by `make new-model`; refine the FILL IN parts."""

from pathlib import Path

import pandas as pd

{imports}


def no_embedded_data(seed: int) -> pd.DataFrame:
    raise ValueError("{name} has no embedded data: set data.source in models/{name}/config.yaml")


# ---- FILL IN (optional): the predict path --------------------------------------------------
# Training fits on prepare(records); evaluation, the gates, the golden prediction, the service
# and batch scoring all call prepare, then predict. The defaults (models/predict.py) build a
# DataFrame of the feature columns and call model.predict (and predict_proba). To change them,
# define your own and pass them below as ModelSpec(..., prepare=prepare, predict=predict):
#
#     def prepare(records: list[dict[str, Any]]) -> pd.DataFrame:
#         return default_prepare(SCHEMA, records)  # then add or change columns
#
#     def predict(model: Any, features: pd.DataFrame) -> Outputs:
#         return default_predict(model, features)
#
# Only the defaults let batch scoring hand the model whole frames: keep them unless you need to.
SPEC = ModelSpec(
    name="{name}",
    task="{task}",
    schema=SCHEMA,
    build_estimator=build_estimator,
    default_data=no_embedded_data,
    config_path=Path(__file__).with_name("config.yaml"),
    # FILL IN (optional): clean=..., sample_weight=..., group_by=(...), extra_metrics={{...}}
)
'''

SCHEMA = '''"""Data contract of {name}, inferred from {data}.

FILL IN: descriptions, bounds and examples; the request schema of the API is derived from this.
"""

from models.contract import Column, FeatureSchema

SCHEMA = FeatureSchema(
    columns=(
{columns}
    ),
    features={features!r},
    target={target!r},
    time_column={time_column!r},
)
'''

ESTIMATOR = '''"""{name} estimator: one scikit-learn Pipeline from raw columns to the prediction."""

from __future__ import annotations

from typing import Any

from sklearn import ensemble
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

CATEGORICAL: list[str] = {categorical!r}
NUMERIC: list[str] = {numeric!r}


def build_estimator(params: dict[str, Any], seed: int) -> Pipeline:
    # FILL IN (optional): feature engineering; keep it inside the Pipeline so serving reuses it.
    # Missing values (the schema's nullable columns) arrive as NaN, a missing category as None:
    # the encoder gives None a code of its own, and the trees learn where NaN goes. An estimator
    # without native support for NaN needs a SimpleImputer in front of it.
    features = ColumnTransformer(
        [
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             CATEGORICAL),
            ("numeric", "passthrough", NUMERIC),
        ],
        verbose_feature_names_out=False,
    )
    # FILL IN (optional): the estimator, this one statement; any scikit-learn one, e.g.
    # ensemble.RandomForest{kind}(random_state=seed, **params), with its params in config.yaml.
    # One from another module: import it above; `make format` then drops `ensemble` if unused.
    model = ensemble.{estimator}(
        categorical_features=list(range(len(CATEGORICAL))), random_state=seed, **params
    )
    return Pipeline([("features", features), ("model", model)])
'''

CONFIG = """# Parameters and acceptance thresholds of {name}. Reviewed in PRs like code.
seed: 42

data:
  source: {data}

split:
{split}

# The estimator's keyword arguments (estimator.py's build_estimator), e.g. max_iter: 200.
params: {{}}

gate:
{baseline}
  thresholds:
{thresholds}
  ratchet:
    metric: {ratchet}
    tolerance: 0.01

# This model's load-test gate: a bound per metric (p50 p90 p99 in ms, error_rate, rps) replaces
# the one of loadtests/config.yaml, e.g. p90: "< 120ms"; load: and traffic: keys replace theirs.
loadtest:
  thresholds: {{}}

# Its stable address in each environment: the environment's port (deploy/config.yaml) + this
# offset, so it never takes another model's. `make status` lists every model's address.
deploy:
  port_offset: {port_offset}

serving:
  max_records: 1000
"""

# The metrics each task's starter gate bounds (higher is better for each); the first is ratcheted.
GATED = {"classification": ("accuracy", "f1_macro"), "regression": ("r2",)}
SEED = 42  # the config's seed: the baseline's folds and the estimator's are the training run's
FOLDS = 5
BASELINE_ROWS = 20_000  # a sample of bigger data: the bounds are a start, not a benchmark
# What default_prepare gives the model for a null, by column kind (numbers and flags: NaN).
GAP = {"category": "None", "date": "NaT"}
# Bounds used only when nothing could be measured (too few rows for two folds).
UNMEASURED = {"accuracy": 0.5, "f1_macro": 0.5, "r2": 0.0}


@dataclass(frozen=True)
class Baseline:
    """Cross-validated scores of one metric: a dummy model's and the scaffolded estimator's."""

    metric: str
    dummy: float | None
    model: float | None

    @property
    def no_better(self) -> bool:
        """The estimator scored no better than the dummy."""
        return self.dummy is not None and self.model is not None and self.model <= self.dummy

    @property
    def bound(self) -> float:
        """Halfway from the dummy to the estimator, rounded down: the estimator passes with room
        for a validation split's noise, a model no better than the dummy fails. The dummy's,
        rounded up, if the estimator did no better than it."""
        if self.dummy is None:
            return UNMEASURED[self.metric]
        if self.model is None or self.no_better:
            return math.ceil(self.dummy * 100) / 100  # at least the dummy
        return math.floor((self.dummy + self.model) / 2 * 100) / 100


def _load_build_estimator(path: Path) -> Callable[[dict[str, Any], int], Any]:
    """`build_estimator` of the estimator.py just written (not yet importable as a package)."""
    module_spec = importlib.util.spec_from_file_location("_scaffolded_estimator", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    build: Callable[[dict[str, Any], int], Any] = module.build_estimator
    return build


def baseline(
    df: pd.DataFrame, features: tuple[str, ...], target: str, task: str, estimator: Path
) -> tuple[list[Baseline], str]:
    """The starter bounds' evidence: FOLDS-fold cross-validated scores of a dummy model (the mean,
    or the most frequent class) and of the estimator in `estimator` (its build_estimator with no
    params), and a line saying what was measured or why not."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    metrics = GATED[task]
    data = df.dropna(subset=[target])
    if len(data) > BASELINE_ROWS:
        data = data.sample(BASELINE_ROWS, random_state=SEED)
    x, y = data[list(features)], data[target]
    classification = task == "classification"
    folds = min(FOLDS, int(y.value_counts().min()) if classification else len(y))
    if folds < 2:
        return [Baseline(m, None, None) for m in metrics], "too few rows for two folds"
    cv = (StratifiedKFold if classification else KFold)(folds, shuffle=True, random_state=SEED)

    def scores(model: Any) -> dict[str, float]:
        # One thread: with OpenMP on a busy 2-core machine five diabetes folds took 40 s, not 0.9.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            out = cross_validate(model, x, y, cv=cv, scoring=list(metrics), error_score="raise")
        means = {m: float(out[f"test_{m}"].mean()) for m in metrics}
        undefined = [m for m, v in means.items() if not math.isfinite(v)]
        if undefined:  # e.g. R2 on folds of one row
            rows = len(y) // folds
            raise ValueError(
                f"{', '.join(undefined)} undefined on folds of {rows} row{'s' * (rows != 1)}"
            )
        return means

    how = f"{folds}-fold cross-validation on {len(data)} rows"
    try:
        dummy = scores(DummyClassifier() if classification else DummyRegressor())
    except Exception as exc:  # a target no dummy can score: the bounds are guesses, said so
        return [Baseline(m, None, None) for m in metrics], f"{how}: {_reason(exc)}"
    try:
        fitted = scores(_load_build_estimator(estimator)({}, SEED))
    except Exception as exc:  # the data scientist replaces the estimator anyway: say why, go on
        return [Baseline(m, dummy[m], None) for m in metrics], f"{how}; {_reason(exc)}"
    return [Baseline(m, dummy[m], fitted[m]) for m in metrics], how


def _reason(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def _gate_comment(baselines: list[Baseline], how: str, data: object, estimator: str) -> str:
    if any(b.dummy is None for b in baselines):
        text = f"Starter bounds, not measured on {data} ({how}): guesses; set your own."
    elif any(b.model is None for b in baselines):
        text = (
            f"Starter bounds from {data} ({how}): the scaffolded {estimator} could not be "
            "scored, so each bound is a dummy model's score (always the mean, or the most "
            "frequent class)."
        )
    elif worse := [b.metric for b in baselines if b.no_better]:
        text = (
            f"Starter bounds, measured by `make new-model` on {data} ({how}): the scaffolded "
            f"{estimator} scored no better than the dummy on {', '.join(worse)} (a dummy model "
            "always predicts the mean, or the most frequent class), so that bound is the "
            "dummy's score and the estimator fails it: the features may not predict the target, "
            "or the estimator needs other params. Other bounds are halfway from the dummy to the "
            "estimator, rounded down."
        )
    else:
        text = (
            f"Starter bounds, measured by `make new-model` on {data} ({how}): each is halfway "
            "from a dummy model (always the mean, or the most frequent class) to the scaffolded "
            f"{estimator}, rounded down. That estimator passes with room for the validation "
            "split's noise; a model no better than the dummy fails. Raise them as the model "
            "improves."
        )
    lines = textwrap.wrap(text, width=94)
    lines += [
        f"  {b.metric}: dummy {_fmt(b.dummy)}, {estimator} {_fmt(b.model)}" for b in baselines
    ]
    return "\n".join(f"  # {line}" for line in lines)


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


class ScaffoldError(ValueError):
    pass


def next_port_offset(models_dir: Path) -> int:
    """The smallest offset no model package under `models_dir` uses (a package without one: 0)."""
    used = set()
    for path in models_dir.glob("*/config.yaml"):
        try:
            data = yaml.safe_load(path.read_text()) or {}
            used.add(int((data.get("deploy") or {}).get("port_offset", 0)))
        except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
            continue  # a broken sibling config is reported when it is loaded, not here
    return next(i for i in range(1, len(used) + 2) if i not in used)


def _imports(name: str) -> str:
    """The package's first-party imports in the order ruff's isort rule wants (by module name):
    `models.cancer.*` sorts before `models.contract`, `models.zeta.*` after it."""
    lines = {
        "models.contract": "from models.contract import ModelSpec",
        f"models.{name}.estimator": f"from models.{name}.estimator import build_estimator",
        f"models.{name}.schema": f"from models.{name}.schema import SCHEMA",
    }
    return "\n".join(lines[module] for module in sorted(lines))


def _kind(s: pd.Series, is_target: bool, task: str) -> str:
    """The column's kind. A file's empty cells make pandas read whole numbers as floats and
    true/false as text: the present values decide."""
    present = s.dropna()
    if pd.api.types.is_bool_dtype(s) or (
        len(present) and present.map(lambda v: isinstance(v, bool)).all()
    ):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "date"
    if pd.api.types.is_numeric_dtype(s) and not (is_target and task == "classification"):
        # Whole numbers with empty cells among them: pandas reads such a column as floats.
        gaps = len(present) < len(s)
        whole = gaps and len(present) > 0 and bool((present == present.round()).all())
        return "int" if pd.api.types.is_integer_dtype(s) or whole else "float"
    return "category"


def _column(name: str, s: pd.Series, is_target: bool, task: str) -> str:
    kind = _kind(s, is_target, task)
    if kind in ("bool", "date"):
        extra = ""
    elif kind in ("int", "float"):
        extra = ", minimum=0" if s.min() >= 0 else ""
    else:
        values = sorted(pd.unique(s.dropna()).tolist(), key=str)
        if len(values) > MAX_CATEGORIES and not is_target:
            raise ScaffoldError(
                f"column {name!r} has {len(values)} distinct text values (> {MAX_CATEGORIES}): "
                "encode it or drop it before scaffolding"
            )
        extra = f", categories={tuple(values)!r}"
    # The first non-null value: an empty first cell would write `example=nan`, which is no name.
    present = s.dropna()
    if is_target or present.empty:
        example = ""
    elif kind == "date":
        example = f", example={str(present.iloc[0])[:10]!r}"
    else:
        first = present.iloc[0]
        first = first.item() if hasattr(first, "item") else first
        example = f", example={int(first) if kind == 'int' else first!r}"
    nullable = ", nullable=True" if s.isna().any() else ""
    return f"        Column(name={name!r}, kind={kind!r}{extra}{example}{nullable}),"


def missing_values(df: pd.DataFrame, target: str) -> dict[str, int]:
    """Empty cells per column that has any; raise ScaffoldError if the target has some (a row
    without its answer teaches nothing: drop those rows first)."""
    counts = {str(c): int(n) for c, n in df.isna().sum().items() if n}
    if target in counts:
        raise ScaffoldError(
            f"TARGET {target!r} is empty in {counts[target]} of {len(df)} rows: "
            "drop those rows before scaffolding"
        )
    return counts


def scaffold(name: str, data: Path, target: str, task: str, root: Path = MODELS_DIR.parent) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ScaffoldError(
            f"NAME {name!r}: use lower case letters, digits and _, starting with a letter"
        )
    if name in available() or (root / "models" / name).exists():
        raise ScaffoldError(f"models/{name} already exists")
    if (root / "models" / f"{name}.py").exists():
        # models/<name>/ would shadow the module of that name and break every command.
        raise ScaffoldError(
            f"NAME {name!r}: models/{name}.py is a module of the project; choose another name"
        )
    if task not in GATED:
        raise ScaffoldError(f"TASK {task!r}: use classification or regression")
    path = data if data.is_absolute() else root / data
    if not path.is_file():
        raise ScaffoldError(f"DATA {data}: no such file")
    try:
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # as training/load.py does
        reason = " ".join(str(exc).split())  # pandas ends some messages with a newline
        raise ScaffoldError(f"DATA {data}: cannot read: {reason}") from None
    if df.empty:
        raise ScaffoldError(f"DATA {data}: no rows to infer the data contract from")
    if target not in df.columns:
        raise ScaffoldError(
            f"TARGET {target!r} is not a column of {data} ({', '.join(map(str, df.columns))})"
        )
    features = tuple(str(c) for c in df.columns if c != target)
    missing = missing_values(df, target)
    columns = "\n".join(_column(str(c), df[c], c == target, task) for c in df.columns)
    categorical = [c for c in features if _kind(df[c], False, task) == "category"]
    numeric = [c for c in features if c not in categorical]
    estimator = (
        "HistGradientBoostingClassifier"
        if task == "classification"
        else "HistGradientBoostingRegressor"
    )
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    fmt = {"name": name, "task": task, "data": rel}
    files = {
        "__init__.py": INIT.format(**fmt, imports=_imports(name)),
        "schema.py": SCHEMA.format(
            **fmt, columns=columns, features=features, target=target, time_column=None
        ),
        "estimator.py": ESTIMATOR.format(
            **fmt,
            estimator=estimator,
            kind="Classifier" if task == "classification" else "Regressor",
            categorical=categorical,
            numeric=numeric,
        ),
    }
    # Every file is rendered before the folder exists; a failed write removes it, so a failure
    # never leaves a half-written package that other commands would then try to import.
    pkg = root / "models" / name
    try:
        pkg.mkdir(parents=True)
    except OSError as exc:
        raise ScaffoldError(f"models/{name}: cannot create: {exc}") from None
    try:
        for filename, text in files.items():
            (pkg / filename).write_text(text)
        # The config last: its starter bounds are measured with the estimator.py just written.
        baselines, how = baseline(df, features, target, task, pkg / "estimator.py")
        (pkg / "config.yaml").write_text(
            CONFIG.format(
                **fmt,
                split="  validation_fraction: 0.2",
                baseline=_gate_comment(baselines, how, rel, estimator),
                thresholds="\n".join(f'    {b.metric}: ">= {b.bound:.2f}"' for b in baselines),
                ratchet=GATED[task][0],
                port_offset=next_port_offset(root / "models"),
            )
        )
    except OSError as exc:
        shutil.rmtree(pkg, ignore_errors=True)
        raise ScaffoldError(f"models/{name}: cannot write: {exc}") from None
    except BaseException:
        shutil.rmtree(pkg, ignore_errors=True)
        raise
    for column, n in missing.items():
        log.warning(
            "column %r: empty in %d of %d rows (%.1f%%): marked nullable; the API accepts null "
            "there and the model gets %s",
            column,
            n,
            len(df),
            100 * n / len(df),
            GAP.get(_kind(df[column], False, task), "NaN"),
        )
    return pkg


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m models.scaffold", description=__doc__)
    p.add_argument("name")
    p.add_argument(
        "--data", type=Path, required=True, help="CSV or Parquet file with the target column"
    )
    p.add_argument("--target", required=True)
    p.add_argument("--task", choices=sorted(GATED), required=True)
    args = p.parse_args(argv)
    try:
        pkg = scaffold(args.name, args.data, args.target, args.task)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rel = pkg.relative_to(MODELS_DIR.parent)
    gate = yaml.safe_load((pkg / "config.yaml").read_text())["gate"]["thresholds"]
    bounds = ", ".join(f"{metric} {bound}" for metric, bound in gate.items())
    print(
        f"created {rel}/: train it with `make train MODEL={args.name}`\n"
        f"starter thresholds: {bounds} (measured on the data: see {rel}/config.yaml)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
