"""A fast predictor for the fitted sales model: request records straight to predictions.

The same computation as the scikit-learn Pipeline (`estimator.py`), without its per-call overhead:
categories go through one dictionary (both fitted encoders composed), calendar features come from
`datetime.date`, and the trees run through `serving.forest.Forest` for small batches (scikit-learn's
own per-tree predictors for large ones). It is served only if its predictions match the Pipeline's
on the whole validation set at registration (the platform checks; see `ModelSpec.compile`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from models.sales.estimator import CATEGORICAL, FLAGS
from serving.forest import Forest, NotCompilable

SMALL_BATCH = 16  # rows; above this scikit-learn's per-tree loop is as fast (measured)


def _category_maps(model: Any) -> list[dict[Any, float]]:
    """Raw category -> the HistGradientBoosting's internal code (NaN: unknown, goes as missing)."""
    features = model.regressor_.named_steps["features"]
    hgb = model.regressor_.named_steps["regressor"]
    ours = features.named_transformers_["categories"]
    inner = hgb._preprocessor.named_transformers_["encoder"]
    maps = []
    for j, categories in enumerate(ours.categories_):
        codes = {float(c): float(i) for i, c in enumerate(inner.categories_[j])}
        maps.append({c: codes.get(float(k), math.nan) for k, c in enumerate(categories.tolist())})
    return maps


def build_predictor(model: Any) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    try:
        pipe = model.regressor_
        features, hgb = pipe.named_steps["features"], pipe.named_steps["regressor"]
    except (AttributeError, KeyError) as exc:
        raise NotCompilable(f"not the sales Pipeline: {exc}") from None
    if [t[0] for t in features.transformers_[:3]] != ["categories", "calendar", "flags"]:
        raise NotCompilable("unexpected feature layout")
    forest = Forest(hgb)
    maps = _category_maps(model)
    known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
    trees = [p[0] for p in hgb._predictors]
    inverse = model.inverse_func
    two_pi = 2 * math.pi

    def features_of(records: list[dict[str, Any]]) -> np.ndarray:
        rows = []
        for r in records:
            d = dt.date.fromisoformat(str(r["date"])[:10])
            doy = d.timetuple().tm_yday
            rows.append(
                [
                    *(m.get(r[c], math.nan) for m, c in zip(maps, CATEGORICAL, strict=True)),
                    d.weekday(),
                    d.day,
                    d.month,
                    math.sin(two_pi * doy / 365.25),
                    math.cos(two_pi * doy / 365.25),
                    *(float(r[f]) for f in FLAGS),
                ]
            )
        return np.asarray(rows, dtype=np.float64)

    def predict(records: list[dict[str, Any]]) -> np.ndarray:
        X = features_of(records)
        if len(records) <= SMALL_BATCH:
            raw = forest.raw_predict(X)
        else:
            raw = np.full(len(records), forest.baseline)
            for tree in trees:
                raw += tree.predict(X, known, f_idx_map, 1)
        return inverse(raw)

    return predict
