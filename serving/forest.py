"""A fitted HistGradientBoostingRegressor as flat arrays, evaluated for all trees at once.

scikit-learn predicts tree by tree (~6 us of overhead per tree: ~2 ms for 300 trees, whatever the
number of rows). Here every tree advances one level per numpy step, so a prediction costs about
as many steps as the deepest tree. Same decisions as scikit-learn's `_predict_from_raw_data`:
NaN and unknown or negative categories follow the node's missing direction, numeric values go
left when `<= threshold`, categories go left when in the node's bitset.

It reads private attributes of the fitted estimator, so it is never trusted on its own: a model
is served this way only after its predictions matched scikit-learn's on the whole validation set
(`training.compiled.parity`), and the service checks the golden prediction again.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np


class NotCompilable(ValueError):
    pass


class Forest:
    """All trees in flat arrays indexed by `tree * width + node`. Leaves point to themselves, so
    every tree can take the same number of steps; categorical decisions are precomputed into a
    dense table (node row x category code, the last column for "missing")."""

    MISSING = 256  # categories are uint8 codes in scikit-learn; this column is "missing"

    def __init__(self, hgb: Any) -> None:
        predictors = getattr(hgb, "_predictors", None)
        if predictors is None or any(len(p) != 1 for p in predictors):
            raise NotCompilable("only single-output HistGradientBoosting models (regression)")
        trees = [p[0] for p in predictors]
        n_trees, width = len(trees), max(len(t.nodes) for t in trees)
        base = (np.arange(n_trees) * width)[:, None]
        node_ids = np.arange(width)[None, :] + base

        def field(name: str, dtype: Any, fill: Any) -> np.ndarray:
            out = np.full((n_trees, width), fill, dtype=dtype)
            for i, t in enumerate(trees):
                out[i, : len(t.nodes)] = t.nodes[name]
            return out

        is_leaf = field("is_leaf", bool, True)
        # Absolute child indices; a leaf (and padding) is its own child on both sides.
        self.left = np.where(is_leaf, node_ids, field("left", np.intp, 0) + base).ravel()
        self.right = np.where(is_leaf, node_ids, field("right", np.intp, 0) + base).ravel()
        self.feature = field("feature_idx", np.intp, 0).ravel()
        self.threshold = field("num_threshold", np.float64, np.inf).ravel()
        self.value = field("value", np.float64, 0.0).ravel()
        self.missing_left = field("missing_go_to_left", bool, True).ravel()
        is_cat = field("is_categorical", bool, False) & ~is_leaf
        self.is_categorical = is_cat.ravel()
        self.has_categorical = bool(is_cat.any())

        # Categorical nodes: which way each code goes, as scikit-learn decides it (left bitset;
        # else right if the category is known; else, like missing and negative codes, the
        # node's missing direction). Row 0 is unused (numeric nodes point there).
        known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
        codes = np.arange(256)
        bits = lambda bitset: ((bitset[codes >> 5] >> (codes & 31).astype(np.uint32)) & 1) == 1  # noqa: E731
        rows = [np.zeros(self.MISSING + 1, dtype=bool)]
        self.cat_row = np.zeros(n_trees * width, dtype=np.intp)
        for i, t in enumerate(trees):
            for j in np.flatnonzero(t.nodes["is_categorical"] & ~t.nodes["is_leaf"].astype(bool)):
                nd = t.nodes[j]
                go_left = bits(t.raw_left_cat_bitsets[nd["bitset_idx"]])
                is_known = bits(np.asarray(known)[f_idx_map[nd["feature_idx"]]])
                missing_left = bool(nd["missing_go_to_left"])
                row = np.where(go_left, True, np.where(is_known, False, missing_left))
                self.cat_row[i * width + j] = len(rows)
                rows.append(np.append(row, missing_left))
        self.cat_left = np.asarray(rows).ravel()

        self.depth = int(max(t.nodes["depth"].max() for t in trees))
        self.baseline = float(np.ravel(hgb._baseline_prediction)[0])
        self.roots = np.arange(n_trees) * width

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions (before the loss's inverse link) for X as the estimator sees it,
        i.e. after its own `_preprocessor` (categories as the model's internal codes)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, n_features = X.shape
        flat_x = X.ravel()
        row_base = (np.arange(n) * n_features)[:, None]
        idx = np.broadcast_to(self.roots, (n, len(self.roots)))
        width = self.MISSING + 1
        for _ in range(self.depth):
            x = np.take(flat_x, row_base + np.take(self.feature, idx))
            missing = np.isnan(x)
            go_left = np.where(
                missing, np.take(self.missing_left, idx), x <= np.take(self.threshold, idx)
            )
            if self.has_categorical:
                cat = np.take(self.is_categorical, idx)
                if cat.any():
                    code = np.where(missing | (x < 0) | ~cat, self.MISSING, x).astype(np.intp)
                    code = np.minimum(code, self.MISSING)
                    decided = np.take(self.cat_left, np.take(self.cat_row, idx) * width + code)
                    go_left = np.where(cat, decided, go_left)
            idx = np.where(go_left, np.take(self.left, idx), np.take(self.right, idx))
        return self.baseline + np.take(self.value, idx).sum(axis=1)


class Feature:
    """One model input computed from a request record: a category code, a number, or a calendar
    part of a date. Plain data, so a compiled predictor pickles without its model package."""

    KINDS = ("category", "float", "weekday", "day", "month", "doy_sin", "doy_cos")

    def __init__(self, kind: str, field: str, codes: dict[Any, float] | None = None) -> None:
        if kind not in self.KINDS:
            raise NotCompilable(f"unknown feature kind {kind!r}")
        self.kind, self.field, self.codes = kind, field, codes

    def value(self, record: dict[str, Any]) -> float:
        v = record[self.field]
        if self.kind == "category":
            return self.codes.get(v, math.nan)  # type: ignore[union-attr]
        if self.kind == "float":
            return float(v)
        d = dt.date.fromisoformat(str(v)[:10])
        if self.kind == "weekday":
            return float(d.weekday())
        if self.kind == "day":
            return float(d.day)
        if self.kind == "month":
            return float(d.month)
        angle = 2 * math.pi * d.timetuple().tm_yday / 365.25
        return math.sin(angle) if self.kind == "doy_sin" else math.cos(angle)


LINKS = {
    "identity": lambda z: z,
    "expm1_clip0": lambda z: np.clip(np.expm1(z), 0, None),
}


class CompiledRegressor:
    """records -> predictions with numpy alone: features, then the forest, then the link.

    Serving it needs neither scikit-learn nor pandas, which the service then never imports:
    a faster cold start and a smaller worker.
    """

    def __init__(self, forest: Forest, features: list[Feature], link: str, chunk: int = 64) -> None:
        if link not in LINKS:
            raise NotCompilable(f"unknown link {link!r}: use one of {sorted(LINKS)}")
        self.forest, self.features, self.link, self.chunk = forest, features, link, chunk

    def __call__(self, records: list[dict[str, Any]]) -> np.ndarray:
        X = np.array([[f.value(r) for f in self.features] for r in records], dtype=np.float64)
        # Per row, cost is flat from ~32 rows on (measured): chunks bound the memory only.
        raw = np.concatenate(
            [self.forest.raw_predict(X[i : i + self.chunk]) for i in range(0, len(X), self.chunk)]
        )
        return LINKS[self.link](raw)
