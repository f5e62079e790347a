"""A compiled predictor for the fitted sales model: request records straight to predictions.

The same computation as the scikit-learn Pipeline (`estimator.py`) in plain numpy: categories go
through one dictionary (both fitted encoders composed), calendar features come from
`datetime.date`, and all trees run together (`models.forest`). It is served only if it matched
the Pipeline on the whole validation set at registration (the platform checks; see
`ModelSpec.compile`), and then without scikit-learn or pandas in the serving process.
"""

from __future__ import annotations

import math
from typing import Any

from models.forest import CompiledRegressor, Feature, Forest, NotCompilable
from models.sales.estimator import CATEGORICAL, FLAGS, expm1_units

CALENDAR = ("weekday", "day", "month", "doy_sin", "doy_cos")  # estimator.date_features' order


def _category_codes(model: Any) -> list[dict[Any, float]]:
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


def build_predictor(model: Any) -> CompiledRegressor:
    try:
        pipe = model.regressor_
        features, hgb = pipe.named_steps["features"], pipe.named_steps["regressor"]
    except (AttributeError, KeyError) as exc:
        raise NotCompilable(f"not the sales Pipeline: {exc}") from None
    if [t[0] for t in features.transformers_[:3]] != ["categories", "calendar", "flags"]:
        raise NotCompilable("unexpected feature layout")
    if model.inverse_func is not expm1_units:
        raise NotCompilable("unexpected target transform")
    inputs = [
        *(
            Feature("category", c, m)
            for c, m in zip(CATEGORICAL, _category_codes(model), strict=True)
        ),
        *(Feature(kind, "date") for kind in CALENDAR),
        *(Feature("float", f) for f in FLAGS),
    ]
    return CompiledRegressor(Forest(hgb), inputs, link="expm1_clip0")
