"""Admit a model package's compiled predictor only if it reproduces the fitted model.

Run at registration on the whole validation set; the verdict is stored with the model, and the
service uses the compiled predictor only when it says `admitted`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.contract import FeatureSchema, ModelSpec

RTOL, ATOL = 1e-7, 1e-7


def parity(
    spec: ModelSpec, fitted: FeatureSchema, model: Any, valid_df: pd.DataFrame
) -> tuple[dict[str, Any] | None, Any | None]:
    """(verdict with its evidence, the predictor if admitted); (None, None) if the package has no
    compiled predictor."""
    if spec.compile is None:
        return None, None
    if spec.task != "regression":
        return {"admitted": False, "reason": "compiled predictors are for regression models"}, None
    records = fitted.records(valid_df)
    expected = np.asarray(model.predict(pd.DataFrame(records, columns=list(spec.schema.features))))
    try:
        predict = spec.compile(model)
        # One call per record and one for all (chunked): a predictor may branch on batch size.
        singles = np.concatenate(
            [predict(records[i : i + 1]) for i in range(min(len(records), 500))]
        )
        batch = np.asarray(predict(records), dtype=float)
    except Exception as exc:  # a compiled predictor that fails is simply not admitted
        return {"admitted": False, "reason": f"{type(exc).__name__}: {exc}"}, None
    diff = float(np.max(np.abs(batch - expected), initial=0.0))
    ok = np.allclose(batch, expected, rtol=RTOL, atol=ATOL) and np.allclose(
        singles, expected[: len(singles)], rtol=RTOL, atol=ATOL
    )
    verdict = {
        "admitted": bool(ok),
        "rows": len(records),
        "max_abs_diff": diff,
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "reason": "matches the fitted model" if ok else f"differs by up to {diff:.3g}",
    }
    return verdict, predict if ok else None
