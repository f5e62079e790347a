"""Fitted models saved in a format that cannot run code when it loads, and file hashes.

A pickle (joblib) runs whatever its bytes say while it loads: a replaced `model.pkl` runs its
payload in every process that opens it. So a fitted model is saved with skops (`model.skops`): a
zip of JSON and numpy arrays that names every type it will build, and `load` builds only the
types in an explicit list: skops' own defaults, scikit-learn's own types below, and those the
model package lists under `persistence.trusted` in its config.yaml (reviewed like code).
Anything else is refused before any object is built. A model skops cannot save at all may be
pickled only if its package opts in (`persistence.allow_pickle: true`); `make models` says so.

Before any model file is read, its sha256 is checked against the one recorded at registration
(core/registry.py): `verify_files`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SKOPS_FILE = "model.skops"
PICKLE_FILE = "model.pkl"  # only with persistence.allow_pickle

# scikit-learn's own types that skops' default set (its estimators, their losses and links)
# leaves out, measured with skops 0.16 `get_untrusted_types` on fitted forests, boosting (both
# kinds), neighbours, MLPs, Gaussian processes, calibration, stacking and voting, SelectKBest and
# SplineTransformer. skops leaves the two tree stores (Tree, TreePredictor) out because a crafted
# file's node indices can crash `predict` (a crash, not code): here a model file loads only once
# its sha256 matches the one registered (`verify_files`), so the files are the pipeline's own.
# Types of other libraries (LightGBM, XGBoost, your own code) stay in persistence.trusted.
_SKLEARN_TYPES = (
    *(
        f"sklearn.{name}"
        for name in (
            "calibration._CalibratedClassifier",
            "calibration._SigmoidCalibration",
            "ensemble._hist_gradient_boosting.predictor.TreePredictor",
            "feature_selection._mutual_info.mutual_info_classif",
            "feature_selection._mutual_info.mutual_info_regression",
            "feature_selection._univariate_selection.chi2",
            "feature_selection._univariate_selection.f_classif",
            "feature_selection._univariate_selection.f_regression",
            "feature_selection._univariate_selection.r_regression",
            "gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
            "neighbors._ball_tree.BallTree",
            "neighbors._kd_tree.KDTree",
            "neural_network._stochastic_optimizers.AdamOptimizer",
            "neural_network._stochastic_optimizers.SGDOptimizer",
            "tree._tree.Tree",
            "utils._bunch.Bunch",
            "utils.validation.check_array",  # HistGradientBoosting's input check
        )
    ),
    *(
        f"sklearn.gaussian_process.kernels.{name}"
        for name in [
            "CompoundKernel",
            "ConstantKernel",
            "DotProduct",
            "ExpSineSquared",
            "Exponentiation",
            "Matern",
            "PairwiseKernel",
            "Product",
            "RBF",
            "RationalQuadratic",
            "Sum",
            "WhiteKernel",
        ]
    ),
    *(
        f"sklearn.metrics._dist_metrics.{name}Distance64"
        for name in ("Chebyshev", "Euclidean", "Manhattan", "Minkowski")
    ),
)
# The numpy, scipy and standard-library pieces those hold (SplineTransformer's BSpline, a dtype,
# HistGradientBoosting's functools.partial).
PLATFORM_TRUSTED = (
    *_SKLEARN_TYPES,
    "functools.partial",
    "numpy.dtype",
    "scipy._lib.array_api_compat.numpy._aliases.asarray",
    "scipy.interpolate._bsplines.BSpline",
)


class UnsafeModelFile(ValueError):
    """A model file that would not load safely, or whose bytes are not the registered ones."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(
    folder: Path, expected: Mapping[str, str], *, what: str, own: Iterable[str] = ()
) -> None:
    """Every file recorded in `expected` is in `folder` with that sha256, and no other file but
    the store's `own` is: else UnsafeModelFile naming the file. Nothing is read beyond hashing."""
    extra = sorted(
        p.name for p in folder.iterdir() if p.name not in expected and p.name not in set(own)
    )
    if extra:
        raise UnsafeModelFile(f"{what}: {extra[0]} is not one of the files recorded: refused")
    for name, digest in sorted(expected.items()):
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise UnsafeModelFile(f"{what}: {name} is missing")
        if sha256(path) != digest:
            raise UnsafeModelFile(
                f"{what}: {name} does not match the sha256 recorded for it: refused"
            )


def _allowed(trusted: Iterable[str]) -> list[str]:
    return sorted({*PLATFORM_TRUSTED, *trusted})


def _untrusted_in(data: bytes | None, path: Path | None, trusted: Iterable[str]) -> list[str]:
    from skops.io import get_untrusted_types

    found = get_untrusted_types(data=data) if data is not None else get_untrusted_types(file=path)
    return sorted(set(found) - set(_allowed(trusted)))


def paste_lines(config: Path, names: list[str]) -> str:
    """Where in `config` to list `names` as trusted, and the exact YAML lines to paste there: the
    items alone under an existing persistence.trusted list, else the keys it lacks."""
    import yaml

    from core.yamlconf import shown

    try:
        root = yaml.compose(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
    key, section = _entry(root, "persistence")
    _, items = _entry(section, "trusted")
    where = f"of {shown(config)}"
    if isinstance(items, yaml.SequenceNode) and not items.flow_style and items.value:
        indent = " " * items.start_mark.column  # at the column of the list's dashes
        lines = [f"{indent}- {name}" for name in names]
        where = f"after line {items.value[-1].end_mark.line + 1} {where} (persistence.trusted)"
    elif isinstance(section, yaml.MappingNode) and not section.flow_style and items is None:
        indent = " " * section.value[0][0].start_mark.column
        lines = [f"{indent}trusted:", *(f"{indent}  - {name}" for name in names)]
        where = f"after line {key.start_mark.line + 1} {where} (persistence:)"
    elif key is None:
        lines = ["persistence:", "  trusted:", *(f"    - {name}" for name in names)]
        where = f"at the end {where}"
    else:  # a flow-style or empty list: no lines to paste as they are
        return f"list them under persistence.trusted in {shown(config)}: {', '.join(names)}"
    return f"add these lines {where}:\n" + "\n".join(lines)


def _entry(node: Any, key: str) -> tuple[Any, Any]:
    """The key and value nodes of `key` in a YAML mapping node, else (None, None)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return k, v
    return None, None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dump_model(
    model: Any, folder: Path, *, trusted: Iterable[str], allow_pickle: bool, config: str
) -> Path:
    """Save `model` into `folder` as model.skops (or model.pkl if skops cannot and the package
    opted in); return the file. Refuses a model holding types the loader would refuse, naming them
    and where to list them (`config`: the package's config file)."""
    import zipfile

    import skops.io

    try:  # deflated: the sales model's file is 0.8 MB instead of 3.2 MB, and loads no slower
        data = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)
    except Exception as exc:  # skops has no way to save some object in the model
        if not allow_pickle:
            raise UnsafeModelFile(
                f"skops cannot save this model ({type(exc).__name__}: {exc}); saving it as a "
                f"pickle needs `persistence: {{allow_pickle: true}}` in {config}"
            ) from None
        import joblib

        path = folder / PICKLE_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            joblib.dump(model, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    if untrusted := _untrusted_in(data, None, trusted):
        raise UnsafeModelFile(
            f"the model holds types that loading would refuse: {', '.join(untrusted)}.\n"
            "Each can run its own code when the model loads or predicts: once you have reviewed "
            f"them, {paste_lines(Path(config), untrusted)}"
        )
    path = folder / SKOPS_FILE
    _atomic_write_bytes(path, data)
    return path


def model_file(folder: Path) -> Path:
    """The fitted model's file in `folder`: model.skops, else model.pkl."""
    skops_path = folder / SKOPS_FILE
    return skops_path if skops_path.is_file() else folder / PICKLE_FILE


def load_model(folder: Path, *, trusted: Iterable[str], allow_pickle: bool) -> Any:
    """The fitted model saved in `folder`, building only trusted types. Call `verify_files`
    first: this checks what the file may build, not who wrote it."""
    path = model_file(folder)
    if path.name == PICKLE_FILE:
        if not path.is_file():
            raise UnsafeModelFile(f"no {SKOPS_FILE} in the model's files")
        if not allow_pickle:
            raise UnsafeModelFile(
                f"{PICKLE_FILE} is a pickle, which runs code when loaded: refused (a package may "
                "opt in with persistence.allow_pickle: true; or register the model again)"
            )
        import joblib

        return joblib.load(path)
    import skops.io

    try:
        untrusted = _untrusted_in(None, path, trusted)
    except Exception as exc:  # not a zip, no schema: not a file skops wrote
        raise UnsafeModelFile(f"{path.name}: not a skops file ({type(exc).__name__})") from None
    if untrusted:
        raise UnsafeModelFile(
            f"{path.name} would build types that are not trusted: {', '.join(untrusted)}: refused"
        )
    return skops.io.load(path, trusted=_allowed(trusted))
