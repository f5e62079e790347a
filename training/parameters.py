"""The model package's estimator, built from the config's `params`, with mistakes explained.

A wrong parameter (unknown name, wrong type, out of range) or a `build_estimator` that raises is a
mistake in the data scientist's own files: it stops the run with the file, line and field (exit 2)
instead of a traceback from deep inside scikit-learn. Checked before any data is read, and again
around the fit, where scikit-learn validates parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.yamlconf import ConfigError, line_of, shown
from models import MODELS_DIR, ModelPackageError, blame
from models.contract import ModelSpec
from training.validate import DataValidationError

# scikit-learn's and Python's messages: "The 'max_iter' parameter of HistGradientBoostingRegressor
# must be an int in the range [1, inf). Got 'lots' instead.", "X.__init__() got an unexpected
# keyword argument 'no_such_param'", "X() got multiple values for keyword argument 'random_state'".
_CONSTRAINT = re.compile(r"The '(?P<param>\w+)' parameter of (?P<owner>\w+) (?P<rule>must be .*)")
_UNEXPECTED = re.compile(
    r"(?P<owner>[\w.]*?)(?:\.__init__)?\(\) got an unexpected keyword argument '(?P<param>\w+)'"
)
_TWICE = re.compile(r"got multiple values for keyword argument '(?P<param>\w+)'")


class EstimatorParamError(ConfigError):
    """A parameter in the config's `params` that the estimator does not accept."""


def _param_error(config_path: Path, param: str, reason: str) -> EstimatorParamError:
    line = line_of(config_path, ("params", param)) or 1
    return EstimatorParamError(f"{shown(config_path)}:{line}: params.{param}: {reason}")


def _where(exc: BaseException, spec: ModelSpec, hook: Any = None) -> str:
    """The model package's line to look at: the deepest frame in it, else `hook`'s first line
    (build_estimator by default)."""
    where = blame(exc, spec.name)
    code = getattr(hook or spec.build_estimator, "__code__", None)
    if where.endswith("/") and code is not None:
        path = Path(code.co_filename).resolve()
        if path.is_relative_to(MODELS_DIR / spec.name):
            where = f"{where}{path.relative_to(MODELS_DIR / spec.name)}:{code.co_firstlineno}"
    return where


def _text_columns(features: Any) -> list[str]:
    """Columns of a DataFrame model input that hold text (a numeric estimator refuses them)."""
    import pandas as pd

    dtypes = getattr(features, "dtypes", None)
    if not isinstance(dtypes, pd.Series):
        return []
    return [
        str(c)
        for c, t in dtypes.items()
        if pd.api.types.is_object_dtype(t)
        or pd.api.types.is_string_dtype(t)
        or isinstance(t, pd.CategoricalDtype)
    ]


def _refused_input(exc: BaseException, spec: ModelSpec, features: Any) -> ModelPackageError:
    """Fit refused the model input for a reason no parameter names: the package's prepare built
    it (or its estimator meets it unprepared), so the message points there, not at the params."""
    text = str(exc)
    custom = spec.prepare is not None
    where = _where(exc, spec, spec.prepare if custom else None)
    made_by = "its prepare" if custom else "the default prepare (the feature columns as they are)"
    hint = ""
    if (columns := _text_columns(features)) and "str" in text:
        listed = ", ".join(repr(c) for c in columns)
        hint = (
            f"; columns {listed} hold text: encode them inside the estimator's Pipeline (as the "
            "scaffold's OrdinalEncoder does) or in prepare"
        )
    return ModelPackageError(
        f"{where}: the {spec.name} estimator cannot fit the model input {made_by} "
        f"returns{hint}: {type(exc).__name__}: {text}"
    )


def explain(
    exc: BaseException,
    spec: ModelSpec,
    params: dict[str, Any],
    config_path: Path,
    features: Any = None,
) -> ConfigError | ModelPackageError:
    """The error to show for `exc`, raised while building `spec`'s estimator, or fitting it on
    `features` (given when fitting)."""
    text = str(exc)
    if (m := _UNEXPECTED.search(text)) and m["param"] in params:
        owner = m["owner"].rsplit(".", 1)[-1] or "the estimator"
        return _param_error(config_path, m["param"], f"not a parameter of {owner}")
    if (m := _TWICE.search(text)) and m["param"] in params:
        return _param_error(
            config_path,
            m["param"],
            f"already set by the model package ({_where(exc, spec)}): remove it from params",
        )
    if m := _CONSTRAINT.search(text):
        rule = m["rule"].rstrip(".").replace(". Got ", "; got ").removesuffix(" instead")
        if m["param"] in params:
            return _param_error(config_path, m["param"], f"{rule} ({m['owner']})")
        # Set by the package's own code, not by the config.
        return ModelPackageError(
            f"{_where(exc, spec)}: {m['owner']} parameter {m['param']!r} {rule}"
        )
    named = [p for p in params if re.search(rf"\b{re.escape(p)}\b", text)]
    if len(named) == 1:  # e.g. fit: "monotonic_cst has shape (1,) but the input data X has ..."
        return _param_error(config_path, named[0], f"{type(exc).__name__}: {text}")
    if features is not None:
        return _refused_input(exc, spec, features)
    return ModelPackageError(
        f"{_where(exc, spec)}: the {spec.name} estimator failed with the params of "
        f"{shown(config_path)}: {type(exc).__name__}: {text}"
    )


def _parts(estimator: Any) -> Iterator[Any]:
    """The estimator and every estimator nested in it (Pipeline steps, wrapped regressors)."""
    yield estimator
    get_params = getattr(estimator, "get_params", None)
    if get_params is None:
        return
    for value in get_params(deep=True).values():
        if hasattr(value, "get_params") and not isinstance(value, type):
            yield value


def check(spec: ModelSpec, params: dict[str, Any], seed: int, config_path: Path) -> None:
    """Build the estimator and validate its parameters, as fit would, without any data."""
    with explained(spec, params, config_path, catch=Exception):
        estimator = spec.build_estimator(params, seed)
        for part in _parts(estimator):
            # scikit-learn >= 1.2 checks parameter types and ranges here; fit calls it too. A
            # data scientist's own estimator declares no constraints: fit checks it, not us.
            validate = getattr(part, "_validate_params", None)
            if callable(validate) and hasattr(part, "_parameter_constraints"):
                validate()


@contextmanager
def explained(
    spec: ModelSpec,
    params: dict[str, Any],
    config_path: Path,
    catch: type[BaseException] | tuple[type[BaseException], ...] = (ValueError, TypeError),
    features: Any = None,
) -> Iterator[None]:
    """Turn errors of building the estimator, or fitting it on `features`, into errors naming
    file, line, field."""
    try:
        yield
    except DataValidationError:
        raise  # already in the data contract's words (an estimator refusing a nullable column)
    except catch as exc:
        raise explain(exc, spec, params, config_path, features) from None
