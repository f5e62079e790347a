"""Serve a model converted to ONNX (training/onnx_export.py) with ONNX Runtime.

Imports numpy and onnxruntime only, never pandas or scikit-learn: a serving worker that runs this
runtime stays small and starts fast. Like any faster runtime it is served only if it reproduced
the predict path on the whole validation set at registration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.contract import Outputs, Task

# Metadata written by training/onnx_export.py into the ONNX file.
COLUMNS_KEY = "bentogate.columns"  # JSON list: the feature column feeding each graph input
PROBABILITIES_KEY = "bentogate.probabilities"  # "false" for a classifier without predict_proba

# A missing text value (a nullable category left empty: None in the model input) as a string
# input takes it, since an ONNX string tensor cannot hold None. scikit-learn's encoders take None
# as a category like any other; training/onnx_export.py converts a copy of the model whose
# encoders hold this string in its place, so the graph encodes it as scikit-learn encodes None.
# The parity check at registration, on rows with each nullable field null, decides.
MISSING_TEXT = "\x00missing"

_DTYPES = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def session_options() -> ort.SessionOptions:
    # One replica per core: each session computes on its caller's thread and starts no pool.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def column(name: str, values: Any, dtype: Any) -> np.ndarray:
    """One graph input (n, 1) from a column's values; refuses, naming the field, any value that
    would have to change to fit the input's type (a float fed to an int64 input, a number to a
    string input)."""
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if dtype is np.object_:
        if kind not in "OUT":
            raise ValueError(f"field {name!r}: expected strings")
        if not all(isinstance(v, str) for v in arr.ravel()):
            if not all(isinstance(v, str) or v is None for v in arr.ravel()):
                raise ValueError(f"field {name!r}: expected strings")
            arr = np.array([MISSING_TEXT if v is None else v for v in arr.ravel()], object)
        out = arr.astype(object, copy=False)
    elif dtype is np.bool_:
        if kind != "b":
            raise ValueError(f"field {name!r}: expected true or false")
        out = arr
    elif dtype is np.int64:
        if kind in "iub":
            out = arr.astype(np.int64, copy=False)
        elif kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            out = arr.astype(np.int64)
        else:
            raise ValueError(f"field {name!r}: expected integers")
    else:
        if kind not in "iubf" and not (kind == "O" and _numbers_or_none(arr)):
            raise ValueError(f"field {name!r}: expected numbers")
        out = arr.astype(dtype)  # None (a missing value) becomes NaN, as in a DataFrame
    return out.reshape(-1, 1)


def _numbers_or_none(arr: np.ndarray) -> bool:
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in arr)


class OnnxPredictor:
    """`predictor(records) -> Outputs`, as the predict path would return them.

    model: the ONNX file (path, or its bytes). classes: the model's `classes_` for a classifier, in
    order. prepare: the model package's `prepare(records) -> DataFrame`, or None to build each input
    straight from the records' fields.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        task: Task,
        classes: Sequence[Any] | None = None,
        prepare: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        if task == "classification" and not classes:
            raise ValueError("a classifier's OnnxPredictor needs its classes")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        self.task = task
        self.classes = np.asarray(classes) if classes is not None else None
        self.prepare = prepare
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = self.session.get_inputs()
        columns = json.loads(meta[COLUMNS_KEY]) if COLUMNS_KEY in meta else [i.name for i in inputs]
        if len(columns) != len(inputs):
            raise ValueError(f"ONNX model has {len(inputs)} inputs for {len(columns)} columns")
        for i in inputs:
            if i.type not in _DTYPES:
                raise ValueError(f"ONNX input {i.name!r} has unsupported type {i.type}")
        # (graph input name, feature column, numpy dtype), in graph order
        self.inputs = [(i.name, c, _DTYPES[i.type]) for i, c in zip(inputs, columns, strict=True)]
        self.probabilities = task == "classification" and meta.get(PROBABILITIES_KEY) != "false"
        # Predictions come first, probabilities second; other outputs (scores) are not computed.
        self.outputs = [o.name for o in self.session.get_outputs()][
            : 2 if self.probabilities else 1
        ]

    def __call__(self, records: list[dict[str, Any]]) -> Outputs:
        if self.prepare is not None:
            return self.predict_frame(self.prepare(records))
        feeds = {
            name: column(col, [r.get(col) for r in records], dtype)
            for name, col, dtype in self.inputs
        }
        return self._run(feeds)

    def predict_frame(self, frame: Any) -> Outputs:
        """Outputs for a prepared DataFrame (anything indexable by column name)."""
        feeds = {
            name: column(col, frame[col].to_numpy(), dtype) for name, col, dtype in self.inputs
        }
        return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> Outputs:
        outputs = self.session.run(self.outputs, feeds)
        if self.task == "regression":
            return Outputs(np.asarray(outputs[0], dtype=np.float64).reshape(-1))
        assert self.classes is not None
        labels = np.asarray(outputs[0]).reshape(-1).astype(self.classes.dtype)
        probabilities = None
        if self.probabilities:
            probabilities = np.asarray(outputs[1], dtype=np.float64)
        return Outputs(labels, probabilities)
