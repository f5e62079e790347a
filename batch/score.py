"""Score one chunk of rows: validate like the API, predict like the service, one output row each.

A pure function of (rows, ids, model, runtime), run by every Spark partition and by the
single-process baseline of `make bench-batch` alike. Valid rows get a prediction (and a
probability per class for a classifier); refused rows get the reasons instead. Nothing is dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from batch import columnar, rows
from serving.runtime import LoadedRuntime, ServedModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pydantic import BaseModel

    from models.contract import Outputs

ID, PREDICTION, FIELD, REASON, MODEL = "id", "prediction", "field", "reason", "model"
# Rows per call of score_frame: a Spark task's batches (batch/tasks.py) and the one-process
# baseline's chunks alike. Large enough that numpy's
# per-call costs vanish and repeated rows meet in one batch (each distinct row is walked through
# the trees once a batch: on the bench file, 1M rows in batches of 50k/100k/250k took 30/15/7 s
# in one process, same run), small enough that a batch stays ~150 MB in a Python worker.
BATCH_ROWS = 250_000


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
    """One output row per input row: id, prediction, probabilities, field, reason.

    The bulk path: the rows that pass the column-wise check (batch/columnar.py) are predicted by
    one call of the runtime on the whole typed frame; only the rows it flags go through the
    per-row check (batch/rows.py), which words the API's reasons, and the records it accepts
    through the service's own per-record call."""
    import numpy as np
    import pandas as pd

    n = len(frame)
    passed = columnar.check(frame, model.schema)
    prediction = np.full(n, np.nan) if model.task == "regression" else np.full(n, None, object)
    probabilities = {c: np.full(n, np.nan) for c in probability_columns(model)}
    field, reason = np.full(n, None, object), np.full(n, None, object)
    if passed.passed.any():
        _put(runtime.predict_frame(passed.frame), passed.passed, prediction, probabilities, model)
    flagged = np.flatnonzero(~passed.passed)
    if len(flagged):
        checked = rows.check(frame.iloc[flagged], model.schema, validator)
        if checked.records:
            # The service's own call: LoadedRuntime.predict, one output per record.
            outputs = runtime.predict(checked.records)
            at = flagged[checked.valid]
            if model.task == "regression":
                prediction[at] = outputs
            else:
                prediction[at] = [label for label, _ in outputs]
                names = zip(probability_columns(model), runtime.classes or [], strict=True)
                for name, cls in names:
                    probabilities[name][at] = [p.get(cls, np.nan) for _, p in outputs]
        for position, first, why in checked.rejected:
            field[flagged[position]], reason[flagged[position]] = first, why
    if model.task == "regression":
        bad = ~np.isfinite(prediction) & pd.isna(reason)
        # The API answers 500 for a non-finite prediction: here the row is refused, with why.
        field[bad], reason[bad] = PREDICTION, "the model returned a non-finite value"
    out: dict[str, Any] = {ID: ids.to_numpy(), PREDICTION: prediction}
    out.update(probabilities)
    out[FIELD], out[REASON] = field, reason
    return pd.DataFrame(out)


def _put(
    outputs: Outputs,
    at: np.ndarray,
    prediction: np.ndarray,
    probabilities: dict[str, np.ndarray],
    model: ServedModel,
) -> None:
    """Write one runtime call's outputs into the rows `at` (a mask), as the API shows them:
    floats for a regressor; labels and a probability per class for a classifier."""
    import numpy as np

    if model.task == "regression":
        prediction[at] = np.asarray(outputs.predictions, dtype=float)
        return
    prediction[at] = np.asarray(outputs.predictions, dtype=object)
    if outputs.probabilities is not None:
        for j, name in enumerate(probability_columns(model)):
            probabilities[name][at] = outputs.probabilities[:, j]
