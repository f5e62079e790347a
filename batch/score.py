"""Score one chunk of rows: validate like the API, predict like the service, one output row each.

A pure function of (rows, ids, model, runtime), run by every Spark partition and by the
single-process baseline of `make bench-batch` alike. Valid rows get a prediction (and a
probability per class for a classifier); refused rows get the reasons instead. Nothing is dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from batch import rows
from serving.runtime import LoadedRuntime, ServedModel

if TYPE_CHECKING:
    import pandas as pd
    from pydantic import BaseModel

ID, PREDICTION, FIELD, REASON, MODEL = "id", "prediction", "field", "reason", "model"


def probability_column(label: Any) -> str:
    """`probability_<class>`, with characters Parquet readers dislike replaced."""
    return "probability_" + re.sub(r"[^0-9A-Za-z_]", "_", str(label))


def probability_columns(model: ServedModel) -> list[str]:
    return [probability_column(c) for c in model.classes or []]


def prediction_kind(model: ServedModel) -> str:
    """ "double", "long" or "string": what a prediction is, as a column type."""
    if model.task == "regression":
        return "double"
    return "long" if all(isinstance(c, int) for c in model.classes or []) else "string"


def score_frame(
    frame: pd.DataFrame,
    ids: pd.Series,
    model: ServedModel,
    runtime: LoadedRuntime,
    validator: type[BaseModel],
) -> pd.DataFrame:
    """One output row per input row: id, prediction, probabilities, field, reason."""
    import numpy as np
    import pandas as pd

    checked = rows.check(frame, model.schema, validator)
    n = len(frame)
    out: dict[str, Any] = {ID: ids.to_numpy()}
    prediction = np.full(n, np.nan) if model.task == "regression" else np.full(n, None, object)
    probabilities = {c: np.full(n, np.nan) for c in probability_columns(model)}
    field, reason = np.full(n, None, object), np.full(n, None, object)
    if checked.records:
        # The service's own call: LoadedRuntime.predict, one output per record.
        outputs = runtime.predict(checked.records)
        valid = np.asarray(checked.valid)
        if model.task == "regression":
            prediction[valid] = outputs
        else:
            prediction[valid] = [label for label, _ in outputs]
            for name, cls in zip(probability_columns(model), runtime.classes or [], strict=True):
                probabilities[name][valid] = [p.get(cls, np.nan) for _, p in outputs]
    for position, first, why in checked.rejected:
        field[position], reason[position] = first, why
    if model.task == "regression":
        bad = ~np.isfinite(prediction)
        bad[[p for p, _, _ in checked.rejected]] = False
        # The API answers 500 for a non-finite prediction: here the row is refused, with why.
        field[bad], reason[bad] = PREDICTION, "the model returned a non-finite value"
    out[PREDICTION] = prediction
    out.update(probabilities)
    out[FIELD], out[REASON] = field, reason
    return pd.DataFrame(out)
