"""A fitted HistGradientBoostingRegressor as flat arrays, evaluated for all trees at once.

scikit-learn predicts tree by tree (~6 us of overhead per tree: ~2 ms for 300 trees, whatever the
number of rows). Here every tree advances one level per numpy step, so a prediction costs about
as many steps as the deepest tree. Same decisions as scikit-learn's `_predict_from_raw_data`:
NaN and unknown or negative categories follow the node's missing direction, numeric values go
left when `<= threshold`, categories go left when in the node's bitset.

It reads private attributes of the fitted estimator, so it is never trusted on its own: a model
is served this way only after its predictions matched scikit-learn's on the whole validation set
(see `training.pipeline`, `compiled_parity`), and the service checks the golden prediction again.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np


class NotCompilable(ValueError):
    pass


class Forest:
    def __init__(self, hgb: Any) -> None:
        predictors = getattr(hgb, "_predictors", None)
        if predictors is None or any(len(p) != 1 for p in predictors):
            raise NotCompilable("only single-output HistGradientBoosting models (regression)")
        trees = [p[0] for p in predictors]
        n_trees, width = len(trees), max(len(t.nodes) for t in trees)

        def field(name: str, dtype: Any, fill: Any) -> np.ndarray:
            out = np.full((n_trees, width), fill, dtype=dtype)
            for i, t in enumerate(trees):
                out[i, : len(t.nodes)] = t.nodes[name]
            return out

        self.feature = field("feature_idx", np.intp, 0)
        self.threshold = field("num_threshold", np.float64, np.inf)
        self.left = field("left", np.intp, 0)
        self.right = field("right", np.intp, 0)
        self.value = field("value", np.float64, 0.0)
        self.is_leaf = field("is_leaf", bool, True)
        self.missing_left = field("missing_go_to_left", bool, True)
        self.is_categorical = field("is_categorical", bool, False)
        # Each tree's categorical bitsets, stacked; a node's row is its tree's offset + bitset_idx.
        offsets = np.cumsum([0] + [len(t.raw_left_cat_bitsets) for t in trees[:-1]])
        self.left_bitsets = np.concatenate(
            [t.raw_left_cat_bitsets for t in trees] + [np.zeros((1, 8), np.uint32)]
        )
        self.bitset_row = field("bitset_idx", np.intp, 0) + offsets[:, None]
        known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
        self.known_bitsets, self.f_idx_map = np.asarray(known), np.asarray(f_idx_map, np.intp)
        self.depth = int(max(t.nodes["depth"].max() for t in trees))
        self.baseline = float(np.ravel(hgb._baseline_prediction)[0])
        self.trees = np.arange(n_trees)
        self.has_categorical = bool(self.is_categorical.any())
        self.width = width
        for name in (
            "feature",
            "threshold",
            "left",
            "right",
            "value",
            "is_leaf",
            "missing_left",
            "is_categorical",
            "bitset_row",
        ):
            setattr(self, f"{name}_f", np.ascontiguousarray(getattr(self, name)).ravel())

    @staticmethod
    def _in_bitset(bitsets: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        v = values.astype(np.intp) & 0xFF  # scikit-learn casts categories to uint8
        words = np.take(bitsets.ravel(), rows * 8 + (v >> 5))
        return ((words >> (v & 31).astype(np.uint32)) & 1).astype(bool)

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions (before the loss's inverse link) for X as the estimator sees it,
        i.e. after its own `_preprocessor` (categories as the model's internal codes)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        n, n_features = X.shape
        flat_x = X.ravel()
        row_base = (np.arange(n) * n_features)[:, None]
        # Flat indices into the (tree, node) arrays: faster than 2-D fancy indexing.
        idx = np.broadcast_to(self.trees * self.width, (n, len(self.trees))).copy()
        for _ in range(self.depth):
            leaf = np.take(self.is_leaf_f, idx)
            if leaf.all():
                break
            feature = np.take(self.feature_f, idx)
            x = np.take(flat_x, row_base + feature)
            missing = np.isnan(x)
            missing_left = np.take(self.missing_left_f, idx)
            go_left = np.where(missing, missing_left, x <= np.take(self.threshold_f, idx))
            if self.has_categorical:
                cat = np.take(self.is_categorical_f, idx) & ~missing
                if cat.any():
                    xc = np.where(cat, x, 0.0)
                    in_left = self._in_bitset(
                        self.left_bitsets, np.take(self.bitset_row_f, idx), xc
                    )
                    known = self._in_bitset(
                        self.known_bitsets, np.take(self.f_idx_map, feature), xc
                    )
                    as_missing = (xc < 0) | (~in_left & ~known)
                    go_left = np.where(cat, np.where(as_missing, missing_left, in_left), go_left)
            child = np.where(go_left, np.take(self.left_f, idx), np.take(self.right_f, idx))
            idx = np.where(leaf, idx, child + (idx - idx % self.width))
        return self.baseline + np.take(self.value_f, idx).sum(axis=1)


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

    def __init__(
        self, forest: Forest, features: list[Feature], link: str, small_batch: int = 16
    ) -> None:
        if link not in LINKS:
            raise NotCompilable(f"unknown link {link!r}: use one of {sorted(LINKS)}")
        self.forest, self.features, self.link, self.small_batch = (
            forest,
            features,
            link,
            small_batch,
        )

    def __call__(self, records: list[dict[str, Any]]) -> np.ndarray:
        X = np.array([[f.value(r) for f in self.features] for r in records], dtype=np.float64)
        # All trees at once is fastest for small batches; chunk larger ones (measured).
        raw = np.concatenate(
            [
                self.forest.raw_predict(X[i : i + self.small_batch])
                for i in range(0, len(X), self.small_batch)
            ]
        )
        return LINKS[self.link](raw)
