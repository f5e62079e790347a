"""Scaffold a new model package from a dataset.

`make new-model NAME=... DATA=... TARGET=... TASK=classification|regression`

Writes models/<name>/ with a data contract inferred from the data (kinds, non-negative bounds,
categories), a generic scikit-learn Pipeline, and a config with starter thresholds. The result
trains and serves as it is; the data scientist then refines the parts marked FILL IN.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

from core import cli
from models import MODELS_DIR, available

MAX_CATEGORIES = 50

log = logging.getLogger("bentogate.scaffold")

INIT = '''"""{name}: {task} on {data}. Scaffolded by `make new-model`; refine the FILL IN parts."""

from pathlib import Path
from typing import Any

import pandas as pd

{imports}


def no_embedded_data(seed: int) -> pd.DataFrame:
    raise ValueError("{name} has no embedded data: set data.source in models/{name}/config.yaml")


# ---- FILL IN (optional): the predict path --------------------------------------------------
# Training fits on prepare(records); evaluation, the gates, the golden prediction, the service
# and batch scoring all call prepare, then predict. Edit these two and everything follows.
def prepare(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Request records -> the model's input: by default a DataFrame of the feature columns."""
    return default_prepare(SCHEMA, records)


def predict(model: Any, features: pd.DataFrame) -> Outputs:
    """The model's input -> predictions (and class probabilities for a classifier)."""
    return default_predict(model, features)


SPEC = ModelSpec(
    name="{name}",
    task="{task}",
    schema=SCHEMA,
    build_estimator=build_estimator,
    default_data=no_embedded_data,
    config_path=Path(__file__).with_name("config.yaml"),
    prepare=prepare,
    predict=predict,
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

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import {estimator}
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

CATEGORICAL = {categorical!r}
NUMERIC = {numeric!r}


def build_estimator(params: dict[str, Any], seed: int) -> Pipeline:
    # FILL IN (optional): feature engineering; keep it inside the Pipeline so serving reuses it.
    # Missing values (the schema's nullable columns) arrive as NaN, a missing category as None:
    # the encoder keeps it missing and the trees learn where it goes. An estimator without
    # native support for them needs a SimpleImputer in front of it.
    features = ColumnTransformer(
        [
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             CATEGORICAL),
            ("numeric", "passthrough", NUMERIC),
        ],
        verbose_feature_names_out=False,
    )
    model = {estimator}(
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

params:
  max_iter: 200
  learning_rate: 0.1

gate:
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

THRESHOLDS = {
    "classification": ('    accuracy: ">= 0.80"\n    f1_macro: ">= 0.75"', "accuracy"),
    "regression": ('    r2: ">= 0.50"', "r2"),
}


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
    `models.cancer.*` sorts before `models.contract`, `models.zeta.*` after `models.predict`."""
    lines = {
        "models.contract": "from models.contract import ModelSpec, Outputs",
        "models.predict": "from models.predict import default_predict, default_prepare",
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
    if task not in THRESHOLDS:
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
    thresholds, ratchet = THRESHOLDS[task]
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    fmt = {"name": name, "task": task, "data": rel}
    files = {
        "__init__.py": INIT.format(**fmt, imports=_imports(name)),
        "schema.py": SCHEMA.format(
            **fmt, columns=columns, features=features, target=target, time_column=None
        ),
        "estimator.py": ESTIMATOR.format(
            **fmt, estimator=estimator, categorical=categorical, numeric=numeric
        ),
        "config.yaml": CONFIG.format(
            **fmt,
            split="  validation_fraction: 0.2",
            thresholds=thresholds,
            ratchet=ratchet,
            port_offset=next_port_offset(root / "models"),
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
    except OSError as exc:
        shutil.rmtree(pkg, ignore_errors=True)
        raise ScaffoldError(f"models/{name}: cannot write: {exc}") from None
    for column, n in missing.items():
        log.warning(
            "column %r: empty in %d of %d rows (%.1f%%): marked nullable; the API accepts null "
            "there and the model gets NaN",
            column,
            n,
            len(df),
            100 * n / len(df),
        )
    return pkg


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m models.scaffold", description=__doc__)
    p.add_argument("name")
    p.add_argument(
        "--data", type=Path, required=True, help="CSV or Parquet file with the target column"
    )
    p.add_argument("--target", required=True)
    p.add_argument("--task", choices=sorted(THRESHOLDS), required=True)
    args = p.parse_args(argv)
    try:
        pkg = scaffold(args.name, args.data, args.target, args.task)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rel = pkg.relative_to(MODELS_DIR.parent)
    print(f"created {rel}/: train it with `make train MODEL={args.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
