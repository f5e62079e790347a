"""Rewrite a converted HistGradientBoosting's categorical splits as set-membership tests.

skl2onnx 1.20 writes every HistGradientBoosting split as `x <= threshold`, categorical ones
included (onnx/sklearn-onnx#1051, open): such a graph answers wrong and fails nothing.
ai.onnx.ml opset 5's TreeEnsemble tests membership of a set (BRANCH_MEMBER), and ONNX Runtime
runs it. `rewrite` builds that node from the fitted trees and puts it in place of skl2onnx's tree
node; every other node of the graph (the encoders before it) is kept. Each split sends a category
code, a missing value, a negative code and an unknown code where scikit-learn's predictor sends
them (sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx): the left set goes left; other
known codes go right; anything else goes where missing values go.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TREE_NODES = ("TreeEnsembleRegressor", "TreeEnsembleClassifier")
ML = "ai.onnx.ml"
ML_OPSET = 5  # the first with TreeEnsemble and BRANCH_MEMBER
LEQ, MEMBER = 0, 6  # TreeEnsemble's nodes_modes


def rewrite(onx: onnx.ModelProto, model: Any) -> None:
    """Replace, in place, the graph's one tree-ensemble node (skl2onnx's conversion of the fitted
    HistGradientBoosting `model`) by a TreeEnsemble computing the same outputs exactly."""
    graph = onx.graph
    found = [i for i, n in enumerate(graph.node) if n.domain == ML and n.op_type in TREE_NODES]
    if len(found) != 1:
        raise ValueError(f"expected one tree-ensemble node in the graph, found {len(found)}")
    (index,) = found
    old = graph.node[index]
    attrs = {a.name: helper.get_attribute_value(a) for a in old.attribute}
    types = _elem_types(onx)
    # Thresholds and leaves in double whatever the graph's float type: sums of many float32 leaves
    # drift (measured 5e-5 on a 300-tree regressor), and category codes are exact either way.
    elem, dtype = TensorProto.DOUBLE, np.float64
    name = _Names(graph)
    x, raw, score = name("hgb_input"), name("hgb_raw"), name("hgb_score")
    base = numpy_helper.from_array(
        np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, -1).astype(dtype),
        name("hgb_baseline"),
    )
    graph.initializer.append(base)
    nodes = [
        helper.make_node("Cast", [old.input[0]], [x], to=elem),
        helper.make_node("TreeEnsemble", [x], [raw], domain=ML, **_ensemble(model, dtype)),
        helper.make_node("Add", [raw, base.name], [score]),
    ]
    post = attrs.get("post_transform", b"NONE")
    post = post.decode() if isinstance(post, bytes) else str(post)
    if old.op_type == "TreeEnsembleRegressor":
        if post != "NONE":
            raise ValueError(f"regressor post_transform {post} is not supported")
        nodes.append(_cast(score, old.output[0], types, graph))
    else:
        nodes += _classifier_outputs(old, attrs, post, score, elem, types, name, graph)
    del graph.node[index]
    for node in reversed(nodes):
        graph.node.insert(index, node)
    for opset in onx.opset_import:
        if opset.domain == ML and opset.version < ML_OPSET:
            opset.version = ML_OPSET


def _classifier_outputs(
    old: Any,
    attrs: dict[str, Any],
    post: str,
    score: str,
    elem: int,
    types: dict[str, int],
    name: _Names,
    graph: Any,
) -> list[Any]:
    """Label (from the raw scores, as HistGradientBoostingClassifier.predict decides it) and
    probabilities (sigmoid for one score, softmax for several)."""
    strings = "classlabels_strings" in attrs
    labels = np.array(
        [s.decode() for s in attrs["classlabels_strings"]]
        if strings
        else attrs["classlabels_int64s"],
        dtype=object if strings else np.int64,
    )
    classes = numpy_helper.from_array(labels, name("hgb_classes"))
    graph.initializer.append(classes)
    index, proba = name("hgb_class_index"), name("hgb_probabilities")
    if post == "LOGISTIC":
        dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
        one, zero, flat = name("hgb_one"), name("hgb_zero"), name("hgb_flat")
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.ones((1, 1), dtype=dtype), one),
                numpy_helper.from_array(np.zeros((1, 1), dtype=dtype), zero),
                numpy_helper.from_array(np.array([-1], dtype=np.int64), flat),
            ]
        )
        p, q, positive, as_int = name("hgb_p"), name("hgb_q"), name("hgb_pos"), name("hgb_pos_int")
        nodes = [
            helper.make_node("Sigmoid", [score], [p]),
            helper.make_node("Sub", [one, p], [q]),
            helper.make_node("Concat", [q, p], [proba], axis=1),
            # scikit-learn: class 1 where the raw score is > 0 (a float32 sigmoid can round to 0.5)
            helper.make_node("Greater", [score, zero], [positive]),
            helper.make_node("Cast", [positive], [as_int], to=TensorProto.INT64),
            helper.make_node("Reshape", [as_int, flat], [index]),
        ]
    elif post == "SOFTMAX":
        nodes = [
            helper.make_node("Softmax", [score], [proba], axis=1),
            helper.make_node("ArgMax", [score], [index], axis=1, keepdims=0),
        ]
    else:
        raise ValueError(f"classifier post_transform {post} is not supported")
    label_out, proba_out = old.output[0], old.output[1]
    nodes.append(helper.make_node("Gather", [classes.name, index], [label_out], axis=0))
    nodes.append(_cast(proba, proba_out, types, graph))
    return nodes


def _ensemble(model: Any, dtype: Any) -> dict[str, Any]:
    """TreeEnsemble attributes for every tree of `model`, summed per target (class)."""
    known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    features = _features(model)
    n: dict[str, list[Any]] = {
        k: []
        for k in (
            "featureids",
            "modes",
            "splits",
            "truenodeids",
            "trueleafs",
            "falsenodeids",
            "falseleafs",
            "missing",
            "members",
            "roots",
            "leaf_targets",
            "leaf_weights",
        )
    }
    for iteration in model._predictors:
        for target, tree in enumerate(iteration):
            _add_tree(tree, target, known, f_idx_map, features, n)
    attrs: dict[str, Any] = {
        "n_targets": int(model.n_trees_per_iteration_),
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE: the baseline is added after
        "tree_roots": n["roots"],
        "nodes_featureids": n["featureids"],
        "nodes_modes": numpy_helper.from_array(np.array(n["modes"], dtype=np.uint8)),
        "nodes_splits": numpy_helper.from_array(np.array(n["splits"], dtype=dtype)),
        "nodes_truenodeids": n["truenodeids"],
        "nodes_trueleafs": n["trueleafs"],
        "nodes_falsenodeids": n["falsenodeids"],
        "nodes_falseleafs": n["falseleafs"],
        "nodes_missing_value_tracks_true": n["missing"],
        "leaf_targetids": n["leaf_targets"],
        "leaf_weights": numpy_helper.from_array(np.array(n["leaf_weights"], dtype=dtype)),
    }
    if n["members"]:
        attrs["membership_values"] = numpy_helper.from_array(np.array(n["members"], dtype=dtype))
    return attrs


def _features(model: Any) -> list[tuple[int, np.ndarray | None]]:
    """For each feature the trees split on: (its column in the estimator's input, the raw value
    of each category code or None for a numeric feature).

    scikit-learn >= 1.4 encodes categorical columns inside the estimator (`_preprocessor`, an
    OrdinalEncoder) and puts them first; skl2onnx feeds the trees the input columns as they are.
    """
    inner = getattr(model, "_preprocessor", None)
    if inner is None:  # the trees see the input columns, categories as their own codes
        return [(f, None) for f in range(model.n_features_in_)]
    is_categorical = np.asarray(model.is_categorical_, dtype=bool)
    categories = inner.named_transformers_["encoder"].categories_
    cat = [
        (int(f), np.asarray(c))
        for f, c in zip(np.flatnonzero(is_categorical), categories, strict=True)
    ]
    return cat + [(int(f), None) for f in np.flatnonzero(~is_categorical)]


def _add_tree(
    tree: Any,
    target: int,
    known: np.ndarray,
    f_idx_map: np.ndarray,
    features: list[tuple[int, np.ndarray | None]],
    n: dict[str, list[Any]],
) -> None:
    nodes = tree.nodes
    ids: dict[int, int] = {}  # scikit-learn node index -> interior node or leaf index
    first = interior = len(n["modes"])
    for i, node in enumerate(nodes):
        if node["is_leaf"]:
            ids[i] = len(n["leaf_weights"])
            n["leaf_weights"].append(float(node["value"]))
            n["leaf_targets"].append(target)
        else:  # interior nodes are appended below in this same order
            ids[i] = interior
            interior += 1
    if nodes[0]["is_leaf"]:  # a tree of one leaf: a split whose two sides are that leaf
        n["roots"].append(first)
        _append(n, LEQ, 0, 0.0, (ids[0], 1), (ids[0], 1), 0)
        return
    n["roots"].append(first)
    for node in nodes:
        if node["is_leaf"]:
            continue
        left = (ids[int(node["left"])], int(nodes[node["left"]]["is_leaf"]))
        right = (ids[int(node["right"])], int(nodes[node["right"]]["is_leaf"]))
        feature = int(node["feature_idx"])
        column, values = features[feature]
        if not node["is_categorical"]:
            missing = int(node["missing_go_to_left"])
            _append(n, LEQ, column, float(node["num_threshold"]), left, right, missing)
            continue
        goes_left = _codes(tree.raw_left_cat_bitsets[node["bitset_idx"]])
        if node["missing_go_to_left"]:  # only known codes outside the left set go right
            codes = _codes(known[f_idx_map[feature]]) - goes_left
            true, false = right, left
        else:  # missing, negative and unknown codes go right with the known right set
            codes = goes_left
            true, false = left, right
        # The test is on the column's raw value: the code's category where the estimator encodes.
        members = sorted(float(c if values is None else values[c]) for c in codes)
        if not members:
            raise ValueError("a categorical split with an empty side")
        n["members"] += [*members, np.nan]  # each node's set ends with NaN
        _append(n, MEMBER, column, np.nan, true, false, 0)


def _append(
    n: dict[str, list[Any]],
    mode: int,
    feature: int,
    split: float,
    true: tuple[int, int],
    false: tuple[int, int],
    missing: int,
) -> None:
    n["modes"].append(mode)
    n["featureids"].append(feature)
    n["splits"].append(split)
    n["truenodeids"].append(true[0])
    n["trueleafs"].append(true[1])
    n["falsenodeids"].append(false[0])
    n["falseleafs"].append(false[1])
    n["missing"].append(missing)


def _codes(bitset: np.ndarray) -> set[int]:
    """The codes 0-255 set in one of scikit-learn's bitsets (8 uint32 words)."""
    return {c for c in range(256) if (int(bitset[c // 32]) >> (c % 32)) & 1}


def _elem_types(onx: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(onx).graph
    return {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.input, *inferred.value_info, *inferred.output)
    }


def _cast(source: str, dest: str, types: dict[str, int], graph: Any) -> Any:
    """`dest` from the double `source`: a graph output becomes double (a float32 answer would
    round what was computed exactly); a tensor other nodes read keeps the type they expect."""
    for output in graph.output:
        if output.name == dest:
            output.type.tensor_type.elem_type = TensorProto.DOUBLE
            return helper.make_node("Identity", [source], [dest])
    elem = types.get(dest)
    if elem in (TensorProto.FLOAT, TensorProto.DOUBLE):
        return helper.make_node("Cast", [source], [dest], to=elem)
    return helper.make_node("Identity", [source], [dest])


class _Names:
    """Fresh tensor names that no node, input, output or initializer of the graph uses."""

    def __init__(self, graph: Any) -> None:
        self.taken = {v for node in graph.node for v in (*node.input, *node.output)}
        self.taken |= {i.name for i in (*graph.input, *graph.output, *graph.initializer)}

    def __call__(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name
