"""Convert a fitted scikit-learn model to ONNX for models/onnx_runtime.py, or say why not.

The graph takes one input per feature column, typed from the column's dtype (int -> int64; float
-> double, but float for tree models and where a converter only takes float; str -> string;
bool -> bool), so the runtime feeds each request field as it came. Conversion is no promise of equal answers: skl2onnx
writes float32 tree thresholds, for one. Only the parity check at registration admits the graph.

Beyond scikit-learn: LightGBM's LGBMClassifier and LGBMRegressor convert with onnxmltools'
converter when lightgbm is installed (the model's own dependency). A HistGradientBoosting that
splits on categories gets its trees from training/onnx_trees.py, since skl2onnx's are wrong.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from models.contract import Task
from models.onnx_runtime import COLUMNS_KEY, MISSING_TEXT, PROBABILITIES_KEY, OnnxPredictor

SAMPLE_ROWS = 64  # rows of `features` run through the converted graph to prove it loads and runs


class NotConvertible(ValueError):
    """The model cannot be served by ONNX Runtime; the message says why in one line."""


def to_onnx(model: Any, features: pd.DataFrame, task: Task) -> bytes:
    """ONNX bytes computing `model`'s predictions (and probabilities, in `classes_` order, for a
    classifier with predict_proba) from `features`' columns: a sample of what `prepare` returns."""
    _refuse_known_failures(model, task)
    model = _missing_category_as_text(model)
    kinds = {name: _kind(name, features[name]) for name in features.columns}
    # Tree converters write float32 thresholds. Fed float32, a value rounds the same way as the
    # threshold it is compared with, so decisions hold; fed float64, values between a threshold
    # and its float32 rounding take the other branch (measured: 11 of 2,000 labels flipped).
    # A HistGradientBoosting with categories gets its trees from onnx_trees, in double: exact.
    floats_first = _has_trees(model) and not _categorical_trees(model)
    order: tuple[str, ...] = ("float", "double") if floats_first else ("double", "float")
    if "double" not in kinds.values():
        order = order[:1]
    reasons = []
    for floats in order:
        step = f"skl2onnx cannot convert {_name(model)}"
        try:
            onx = _convert(
                model, {n: floats if k == "double" else k for n, k in kinds.items()}, task
            )
            step = f"the ONNX graph of {_name(model)} does not run"
            _check_runs(onx, features, model, task)
            return onx
        except NotConvertible:
            raise
        except Exception as exc:  # skl2onnx and ORT raise anything: one line for `make models`
            reasons.append(f"{step}: {_one_line(exc)}")
    raise NotConvertible(reasons[0])


def _kind(name: str, col: pd.Series) -> str:
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _kind(name, col.astype(dtype.categories.dtype))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int64"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise NotConvertible(
            f"column {name!r} is {dtype}: an ONNX graph takes no dates (a prepare that turns "
            "it into numbers would make the model convertible)"
        )
    if pd.api.types.is_string_dtype(dtype) and all(isinstance(v, str) for v in col.dropna()):
        return "string"  # a missing value is fed as MISSING_TEXT (models/onnx_runtime.py)
    raise NotConvertible(f"column {name!r} of dtype {dtype} has no ONNX input type")


def _estimators(model: Any):
    """The model and every estimator inside it (Pipeline steps, ColumnTransformer parts, fitted
    sub-estimators), each once."""
    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not hasattr(obj, "get_params"):
            continue
        seen.add(id(obj))
        yield obj
        for key, value in vars(obj).items():
            if key == "_preprocessor":  # HistGradientBoosting's own encoder: see onnx_trees
                continue
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                stack.extend(item if isinstance(item, tuple) else [item])


def _learned_none(est: Any) -> bool:
    """A one-hot or ordinal encoder that learned None as a category of a text column: scikit-learn
    takes None (unlike NaN) as a category like any other, sorted last."""
    return type(est).__name__ in ("OneHotEncoder", "OrdinalEncoder") and any(
        c.dtype == object and any(v is None for v in c) for c in getattr(est, "categories_", [])
    )


def _missing_category_as_text(model: Any) -> Any:
    """`model`, or a copy whose encoders list MISSING_TEXT in place of the None they learned: the
    graph's string input is fed that string for a missing value (models/onnx_runtime.py) and
    encodes it as scikit-learn encodes None. The copy is converted, never served; parity on rows
    with each nullable field null admits the graph or not."""
    import copy

    if not any(_learned_none(est) for est in _estimators(model)):
        return model
    converted = copy.deepcopy(model)
    for est in _estimators(converted):
        if _learned_none(est):
            est.categories_ = [
                np.array([MISSING_TEXT if v is None else v for v in c], dtype=object)
                if c.dtype == object
                else c
                for c in est.categories_
            ]
    return converted


def _refuse_known_failures(model: Any, task: Task) -> None:
    """Cases skl2onnx gets wrong or cannot do, named clearly before it fails obscurely."""
    if not hasattr(model, "predict"):
        raise NotConvertible(f"{_name(model)} has no predict method")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except (NotFittedError, TypeError) as exc:
        raise NotConvertible(f"{_name(model)} is not a fitted estimator") from exc
    if task == "classification" and not hasattr(model, "classes_"):
        raise NotConvertible(f"{_name(model)} is not a fitted classifier (no classes_)")
    for est in _estimators(model):
        kind = type(est).__name__
        if kind == "FunctionTransformer" and est.func is not None:
            func = getattr(est.func, "__name__", "a function")
            raise NotConvertible(
                f"FunctionTransformer with a function ({func}) cannot be converted"
            )
        if kind == "TransformedTargetRegressor":
            raise NotConvertible(
                "TransformedTargetRegressor cannot be converted (skl2onnx has no converter)"
            )
    if len(_categorical_trees(model)) > 1:  # onnx_trees rewrites the graph's one tree node
        raise NotConvertible("more than one HistGradientBoosting with categorical features")


def _categorical_trees(model: Any) -> list[Any]:
    """The HistGradientBoosting estimators in `model` that split on categories."""
    found = []
    for est in _estimators(model):
        categorical = getattr(est, "is_categorical_", None)
        is_hgb = type(est).__name__.startswith("HistGradientBoosting")
        if is_hgb and categorical is not None and np.any(categorical):
            found.append(est)
    return found


def _has_trees(model: Any) -> bool:
    return any(
        any(word in type(est).__name__ for word in ("Tree", "Forest", "GradientBoosting", "LGBM"))
        for est in _estimators(model)
    )


def _selects_columns(model: Any) -> bool:
    """True if the model picks its columns by name (a ColumnTransformer first): it then takes one
    input per column itself. Otherwise it takes the whole matrix, built here from the columns."""
    while type(model).__name__ == "Pipeline":
        model = model.steps[0][1]
    return type(model).__name__ == "ColumnTransformer"


def _convert(model: Any, kinds: dict[str, str], task: Task) -> bytes:
    import onnx
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common import data_types as t

    from training import onnx_trees

    types = {
        "double": t.DoubleTensorType,
        "float": t.FloatTensorType,
        "int64": t.Int64TensorType,
        "string": t.StringTensorType,
        "bool": t.BooleanTensorType,
    }
    probabilities = task == "classification" and hasattr(model, "predict_proba")
    options = {id(model): {"zipmap": False}} if probabilities else None
    columns = list(kinds)
    opset = None
    if _register_lightgbm() and any("LGBM" in type(est).__name__ for est in _estimators(model)):
        # onnxmltools writes ai.onnx.ml opset 3 nodes; skl2onnx must be told it may.
        opset = {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}
    categorical = _categorical_trees(model)  # at most one: see _refuse_known_failures
    with warnings.catch_warnings():
        # skl2onnx 1.20's tree converters hand protobuf numpy bools; protobuf 6 warns (7 refuses,
        # hence protobuf<7), and a caller running with warnings as errors would get no graph.
        warnings.filterwarnings("ignore", "Field onnx.AttributeProto.ints", DeprecationWarning)
        if _selects_columns(model):
            initial = [(n, types[k]([None, 1])) for n, k in kinds.items()]
            onx = convert_sklearn(model, initial_types=initial, options=options, target_opset=opset)
        else:
            matrix = _matrix_kind(kinds)
            onx = convert_sklearn(
                model,
                initial_types=[("X", types[matrix]([None, len(kinds)]))],
                options=options,
                target_opset=opset,
            )
            _columns_to_matrix(onx, kinds, matrix)
    if categorical:
        onnx_trees.rewrite(onx, categorical[0])
    if len(onx.graph.input) != len(columns):
        raise NotConvertible(
            f"the converted graph has {len(onx.graph.input)} inputs for {len(columns)} columns"
        )
    onnx.helper.set_model_props(
        onx,
        {COLUMNS_KEY: json.dumps(columns), PROBABILITIES_KEY: json.dumps(probabilities)},
    )
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


@functools.cache
def _register_lightgbm() -> bool:
    """Teach skl2onnx LightGBM's scikit-learn estimators (onnxmltools' converter), once, if the
    model's own library is installed; False if it is not."""
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
    except ImportError:
        return False
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
    )
    return True


def _matrix_kind(kinds: dict[str, str]) -> str:
    """The dtype scikit-learn sees for these columns as one array (DataFrame.to_numpy, then
    check_array): all int -> int64, all strings -> strings, numbers and bools -> float64."""
    found = set(kinds.values())
    if found == {"string"}:
        return "string"
    if "string" in found:
        raise NotConvertible(
            "string and numeric columns reach the model as one array; put a ColumnTransformer "
            "first to encode the string columns"
        )
    if found == {"int64"}:
        return "int64"
    return "float" if "float" in found else "double"


def _columns_to_matrix(onx: Any, kinds: dict[str, str], matrix: str) -> None:
    """Replace the graph's matrix input with one input per column, concatenated exactly.

    skl2onnx would join per-column inputs with FeatureVectorizer, which always outputs float32:
    every double column would be rounded before the model sees it.
    """
    from onnx import TensorProto, helper

    proto = {
        "double": TensorProto.DOUBLE,
        "float": TensorProto.FLOAT,
        "int64": TensorProto.INT64,
        "string": TensorProto.STRING,
        "bool": TensorProto.BOOL,
    }
    graph = onx.graph
    (matrix_input,) = graph.input
    taken = {*(v for n in graph.node for v in (*n.input, *n.output))}
    taken |= {i.name for i in graph.initializer} | {o.name for o in graph.output}
    inputs, nodes, parts = [], [], []
    for i, (column, kind) in enumerate(kinds.items()):
        name = column if column not in taken else f"{column}_{i}"
        taken.add(name)
        inputs.append(helper.make_tensor_value_info(name, proto[kind], [None, 1]))
        if kind != matrix:
            cast = f"{name}_as_{matrix}"
            nodes.append(helper.make_node("Cast", [name], [cast], to=proto[matrix]))
            name = cast
        parts.append(name)
    nodes.append(helper.make_node("Concat", parts, [matrix_input.name], axis=1))
    graph.ClearField("input")
    graph.input.extend(inputs)
    for node in reversed(nodes):  # the nodes are topologically sorted: these come first
        graph.node.insert(0, node)


def _check_runs(onx: bytes, features: pd.DataFrame, model: Any, task: Task) -> None:
    """Load the graph in ONNX Runtime and run it on a sample: a graph that converted but cannot
    load (mixed float/double types) or run is no graph."""
    classes = list(model.classes_) if task == "classification" else None
    predictor = OnnxPredictor(onx, task, classes)
    sample = features.head(SAMPLE_ROWS)
    out = predictor.predict_frame(sample)
    if out.predictions.shape != (len(sample),):
        raise ValueError(f"predictions of shape {out.predictions.shape} for {len(sample)} rows")
    shape = (len(sample), len(classes or ()))  # probabilities come from classifiers only
    if out.probabilities is not None and out.probabilities.shape != shape:
        raise ValueError(f"probabilities of shape {out.probabilities.shape}")


def _name(model: Any) -> str:
    if type(model).__name__ == "Pipeline":
        return "Pipeline(" + ", ".join(_name(step) for _, step in model.steps) + ")"
    return type(model).__name__


def _one_line(exc: Exception) -> str:
    missing = re.search(r"shape calculator for type '<class '[\w.]*?(\w+)'>'", str(exc))
    if missing:
        return f"no converter for {missing.group(1)}"
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
