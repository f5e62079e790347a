"""A fitted HistGradientBoostingRegressor as flat node arrays and per-feature decision blocks.

scikit-learn predicts tree by tree (~6 us of overhead per tree: ~2 ms for 300 trees, whatever the
number of rows). Here each input value is first reduced to a code: a category's own code, or for
a number the count of split thresholds below it on its feature (NaN and unknown or negative
categories get the "missing" code). Every split is then a rule saying, for each code, whether to
go right; a row's decisions on all splits are one row copied per feature. Then all trees descend
together, one numpy step per level, setting aside those that reached a leaf: ~35 us for one
record, ~11 us per record in batches (scikit-learn: ~5 ms per call, ~10 us per record).

Same decisions as scikit-learn's `_predict_from_raw_data`: numbers go left when `<= threshold`
(exactly when their code is at most the threshold's index), categories go left when in the node's
bitset, else right if known, else (like NaN and negative codes) the node's missing direction.

It reads private attributes of the fitted estimator, so it is never trusted on its own: a model
is served this way only after its predictions matched scikit-learn's on the whole validation set
(`training.compiled.parity`), and the service checks the golden prediction again.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import os
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class NotCompilable(ValueError):
    pass


class Forest:
    """All trees in flat arrays over nodes numbered so that a node's two children are adjacent
    (`left[node] + goes_right`); leaves are their own left child and use a rule that always stays."""

    MISSING = 256  # codes 0..255 are categories or threshold ranks; this one is "missing"
    FORMAT = 4  # bump when the layout changes: a saved forest of another format is refused
    COMPACT_EVERY = 5  # levels between setting finished walkers aside (measured: 1 to 4 slower)

    def __init__(self, hgb: Any) -> None:
        predictors = getattr(hgb, "_predictors", None)
        if predictors is None or any(len(p) != 1 for p in predictors):
            raise NotCompilable("only single-output HistGradientBoosting models (regression)")
        trees = [p[0] for p in predictors]
        self.format = self.FORMAT
        self.n_features = len(hgb._bin_mapper.n_bins_non_missing_)
        splits = np.concatenate([t.nodes[~t.nodes["is_leaf"].astype(bool)] for t in trees])
        categorical = np.zeros(self.n_features, dtype=bool)
        categorical[splits["feature_idx"][splits["is_categorical"].astype(bool)]] = True
        self.categorical = categorical.tolist()
        # A numeric feature's codes rank a value among all thresholds used on that feature.
        self.edges: list[list[float]] = [
            []
            if categorical[j]
            else np.unique(splits["num_threshold"][splits["feature_idx"] == j]).tolist()
            for j in range(self.n_features)
        ]
        if max(map(len, self.edges)) >= self.MISSING:
            raise NotCompilable("more thresholds on one feature than codes")

        known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
        codes = np.arange(self.MISSING)
        bits = lambda bitset: ((bitset[codes >> 5] >> (codes & 31).astype(np.uint32)) & 1) == 1  # noqa: E731
        rules: dict[tuple[int, bytes], int] = {}
        table = [np.zeros(self.MISSING + 1, dtype=np.uint8)]  # rule 0 (before sorting): stay
        rule_feature = [0]

        def rule(tree: Any, nd: Any) -> int:
            j = int(nd["feature_idx"])
            if nd["is_categorical"]:
                go_left = bits(tree.raw_left_cat_bitsets[nd["bitset_idx"]])
                is_known = bits(np.asarray(known)[f_idx_map[j]])
                missing_right = not nd["missing_go_to_left"]
                right = np.where(go_left, False, is_known | missing_right)
            else:
                right = codes > self.edges[j].index(float(nd["num_threshold"]))
            row = np.append(right, not nd["missing_go_to_left"]).astype(np.uint8)
            key = (j, row.tobytes())
            if key not in rules:
                rules[key] = len(table)
                table.append(row)
                rule_feature.append(j)
            return rules[key]

        left: list[int] = []
        node_rule: list[int] = []
        value: list[float] = []
        roots, self.depth = [], 0
        for tree in trees:
            nodes = tree.nodes
            roots.append(len(left))
            level, levels = [(0, len(left))], 0  # (node in the tree, its new number)
            left.append(0)
            node_rule.append(0)
            value.append(0.0)
            while level:
                below = []
                for old, new in level:
                    nd = nodes[old]
                    if nd["is_leaf"]:
                        left[new], value[new] = new, float(nd["value"])
                        continue
                    left[new], node_rule[new] = len(left), rule(tree, nd)
                    for child in (int(nd["left"]), int(nd["right"])):
                        below.append((child, len(left)))
                        left.append(0)
                        node_rule.append(0)
                        value.append(0.0)
                levels += bool(below)
                level = below
            self.depth = max(self.depth, levels)
        self.left = np.asarray(left, dtype=np.intp)
        self.value = np.asarray(value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)
        # Rules grouped by feature, one block per feature indexed by code ([code, rule]): a row's
        # decisions on a feature are one contiguous row of its block, so all decisions for n rows
        # are one row-gather per feature (memcpy speed), not one lookup per rule and row.
        by_feature = np.argsort(rule_feature, kind="stable")
        renumber = np.empty_like(by_feature)
        renumber[by_feature] = np.arange(len(by_feature))
        self.rule = renumber[np.asarray(node_rule, dtype=np.intp)]
        decisions = np.asarray(table)[by_feature].T  # (codes, rules)
        bounds = np.searchsorted(np.asarray(rule_feature)[by_feature], np.arange(self.n_features))
        self.blocks = [
            (j, np.ascontiguousarray(decisions[:, start:end]))
            for j, (start, end) in enumerate(zip(bounds, [*bounds[1:], len(table)], strict=True))
            if end > start
        ]
        self.baseline = float(np.ravel(hgb._baseline_prediction)[0])

    def encode(self, row: Sequence[float]) -> list[int]:
        """One row of raw values -> codes, in plain Python (cheaper than numpy for a few rows)."""
        out = []
        for v, is_cat, edges in zip(row, self.categorical, self.edges, strict=True):
            if is_cat:
                # NaN, negative, fractional or too large: missing, as scikit-learn decides
                out.append(int(v) if 0 <= v < self.MISSING and v == int(v) else self.MISSING)
            else:
                out.append(self.MISSING if v != v else bisect_left(edges, v))
        return out

    def encode_array(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        codes = np.empty(X.shape, dtype=np.intp)
        for j, (is_cat, edges) in enumerate(zip(self.categorical, self.edges, strict=True)):
            x = X[:, j]
            if is_cat:
                ok = (x >= 0) & (x < self.MISSING) & (x == np.floor(x))  # False for NaN
                codes[:, j] = np.where(ok, np.where(ok, x, 0).astype(np.intp), self.MISSING)
            else:
                codes[:, j] = np.where(np.isnan(x), self.MISSING, np.searchsorted(edges, x))
        return codes

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """Raw predictions (before the loss's inverse link) for rows of codes (n x features)."""
        left, rule = self.left, self.rule
        if len(codes) == 1:  # the common case in serving: no row offsets, nothing to compact
            code = codes[0]
            right = np.concatenate([block[code[j]] for j, block in self.blocks])
            node = self.roots
            for _ in range(self.depth):
                node = left[node] + right[rule[node]]
            return self.baseline + self.value[node].sum(keepdims=True)
        # Every split's direction for every row: (n, rules), flattened.
        goes_right = np.concatenate([block[codes[:, j]] for j, block in self.blocks], axis=1)
        n, width = goes_right.shape
        flat = goes_right.ravel()
        # One walker per (row, tree). Most trees end in a leaf well before the deepest one (on
        # the sales model 1/3 of the walkers are still walking at level 3, 1/50 at level 8), so
        # every few levels the finished walkers are set aside: a batch costs ~1/3 of walking
        # all of them to the bottom.
        walker = np.arange(n * len(self.roots))
        row = np.repeat(np.arange(n, dtype=np.intp) * width, len(self.roots))
        node = np.tile(self.roots, n)
        leaf = np.empty_like(node)
        nxt = left[node]
        for level in range(self.depth):
            node = nxt + flat[row + rule[node]]
            nxt = left[node]
            if level % self.COMPACT_EVERY == 1:
                done = nxt == node
                leaf[walker[done]] = node[done]
                walking = ~done
                walker, node, row, nxt = walker[walking], node[walking], row[walking], nxt[walking]
                if not len(node):
                    break
        leaf[walker] = node
        return self.baseline + self.value[leaf].reshape(n, -1).sum(axis=1)

    def predict_distinct(self, codes: np.ndarray, chunk: int) -> np.ndarray:
        """`predict_codes` for many rows, walking each distinct row of codes once.

        A row's prediction depends on its codes alone, and bulk inputs repeat them (a forecast
        file holds the same item, day and flags once per store). Finding the distinct rows costs
        two sorts of one int64 key per row: ~0.1 s for 1M rows, ~1% of walking 1M rows.
        Each row's sum runs over the same trees in the same order: bit-identical results."""
        key = np.zeros(len(codes), dtype=np.int64)
        limit = np.iinfo(np.int64).max // (self.MISSING + 1)
        for j in range(codes.shape[1]):
            if len(key) and int(key.max()) >= limit:  # renumber before the key would overflow
                key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            key = key * (self.MISSING + 1) + codes[:, j]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        distinct = codes[first]
        raw = [self.predict_codes(distinct[i : i + chunk]) for i in range(0, len(distinct), chunk)]
        return np.concatenate(raw)[inverse] if raw else np.empty(0)

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions for X as the estimator sees it, i.e. after its own `_preprocessor`
        (categories as the model's internal codes)."""
        return self.predict_codes(self.encode_array(X))


class Feature:
    """One model input computed from a request record: a category code, a number, or a calendar
    part of a date. Plain data, so a compiled predictor is saved as JSON and arrays."""

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
        return _calendar(str(v)[:10])[self.kind]

    def column(self, frame: Any) -> np.ndarray:
        """`value` for every row of a frame of typed columns (`models.predict.default_prepare`'s:
        dates as datetime64), computed once per distinct value with the same `value` code, so
        each number is the one a request record would give."""
        import pandas as pd

        s = frame[self.field]
        if self.kind == "float":
            return s.to_numpy(dtype=np.float64)
        positions, distinct = pd.factorize(s, use_na_sentinel=False)
        if self.kind == "category":
            values = [self.codes.get(v, math.nan) for v in distinct.tolist()]  # type: ignore[union-attr]
        else:
            days = distinct.strftime("%Y-%m-%d") if hasattr(distinct, "strftime") else distinct
            values = [_calendar(str(d)[:10])[self.kind] for d in days]
        return np.asarray(values, dtype=np.float64)[positions]


@functools.lru_cache(maxsize=4096)  # requests repeat dates; parsing one costs ~1.5 us per part
def _calendar(day: str) -> dict[str, float]:
    d = dt.date.fromisoformat(day)
    angle = 2 * math.pi * d.timetuple().tm_yday / 365.25
    return {
        "weekday": float(d.weekday()),
        "day": float(d.day),
        "month": float(d.month),
        "doy_sin": math.sin(angle),
        "doy_cos": math.cos(angle),
    }


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
        features = self.features
        values = [[f.value(r) for f in features] for r in records]
        if len(values) < 32:  # measured crossover: plain Python is cheaper for a few rows
            codes = np.array([self.forest.encode(v) for v in values], dtype=np.intp)
        else:
            codes = self.forest.encode_array(np.array(values, dtype=np.float64))
        # Per row, cost is flat from ~32 rows on (measured): chunks bound the memory only.
        raw = np.concatenate(
            [
                self.forest.predict_codes(codes[i : i + self.chunk])
                for i in range(0, len(codes), self.chunk)
            ]
        )
        return LINKS[self.link](raw)

    def predict_frame(self, frame: Any) -> np.ndarray:
        """Predictions for a frame of many rows (batch scoring): features column by column,
        each distinct row of codes walked once. Same numbers as `__call__` on the records."""
        if not len(frame):
            return np.empty(0)
        values = np.column_stack([f.column(frame) for f in self.features])
        codes = self.forest.encode_array(values)
        return LINKS[self.link](self.forest.predict_distinct(codes, max(self.chunk, 256)))


# ---- saved as plain arrays and JSON: loading builds numbers and lists, never runs code ----------

_ARRAYS = ("left", "value", "roots", "rule")


def save(predictor: CompiledRegressor, path: Path) -> None:
    """One .npz: the forest's arrays, each feature block, and a `meta` entry holding the rest as
    UTF-8 JSON (format, features with their category codes, edges, link). No object arrays, so it
    loads with numpy's allow_pickle=False."""
    forest = predictor.forest
    meta = {
        "format": forest.format,
        "n_features": forest.n_features,
        "depth": forest.depth,
        "baseline": forest.baseline,
        "categorical": forest.categorical,
        "edges": forest.edges,
        "blocks": [j for j, _ in forest.blocks],
        "features": [
            {
                "kind": f.kind,
                "field": f.field,
                # pairs, not an object: JSON keys are strings and categories may be numbers
                "codes": None
                if f.codes is None
                else [[k, None if v != v else v] for k, v in f.codes.items()],
            }
            for f in predictor.features
        ],
        "link": predictor.link,
        "chunk": predictor.chunk,
    }
    arrays = {name: getattr(forest, name) for name in _ARRAYS}
    arrays |= {f"block_{i}": block for i, (_, block) in enumerate(forest.blocks)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> CompiledRegressor:
    """The predictor `save` wrote; NotCompilable for another format or a malformed file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            if meta.get("format") != Forest.FORMAT:
                raise NotCompilable(
                    f"compiled with another forest format ({meta.get('format')}, this code reads "
                    f"{Forest.FORMAT}): register the model again"
                )
            forest = Forest.__new__(Forest)
            forest.format = meta["format"]
            forest.n_features, forest.depth = int(meta["n_features"]), int(meta["depth"])
            forest.baseline = float(meta["baseline"])
            forest.categorical = [bool(c) for c in meta["categorical"]]
            forest.edges = [[float(e) for e in edges] for edges in meta["edges"]]
            for name in _ARRAYS:
                setattr(forest, name, npz[name])
            forest.blocks = [(int(j), npz[f"block_{i}"]) for i, j in enumerate(meta["blocks"])]
            features = [
                Feature(
                    f["kind"],
                    f["field"],
                    None
                    if f["codes"] is None
                    else {k: math.nan if v is None else float(v) for k, v in f["codes"]},
                )
                for f in meta["features"]
            ]
            return CompiledRegressor(forest, features, meta["link"], int(meta["chunk"]))
    except NotCompilable:
        raise
    except Exception as exc:  # truncated, not an npz, missing keys, object arrays
        raise NotCompilable(
            f"{path.name}: not a compiled predictor ({type(exc).__name__})"
        ) from None
