"""Brought-in scikit-learn models converted to ONNX answer as the predict path does, or are refused
with a readable reason; the ONNX runtime stays free of pandas and scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    SplineTransformer,
    StandardScaler,
)
from threadpoolctl import threadpool_limits

from core.settings import ROOT
from models.contract import Outputs
from models.onnx_runtime import OnnxPredictor
from models.predict import default_predict
from training import onnx_export, onnx_trees
from training.onnx_export import NotConvertible, to_onnx

# Probabilities may differ by rounding only. Computed in float64 throughout (linear models on
# double inputs; a categorical HistGradientBoosting, whose trees onnx_trees writes in double)
# they agree to 1e-12 (measured: 2.2e-16); other tree models sum float32 leaf values
# (measured: 8.8e-8 on HistGradientBoosting, 2.7e-7 behind an ordinal encoder).
FLOAT64_ATOL = 1e-12
FLOAT32_ATOL = 1e-6


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def shop() -> pd.DataFrame:
    """Mixed columns as a model package's prepare returns them: float, int, str, bool."""
    rng = np.random.default_rng(7)
    n = 2000
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n).round(2),
            "count": rng.integers(0, 50, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "promo": rng.random(n) < 0.3,
        }
    )
    score = (
        0.3 * (frame["size"] - 10)
        + 0.05 * (frame["count"] - 25)
        + frame["color"].map({"red": 1.0, "green": 0.0, "blue": -1.0})
        + frame["promo"]
    )
    return frame.assign(
        bought=np.where(score + rng.normal(0, 0.5, n) > 0, "buy", "skip"),
        spent=score * 10 + rng.normal(0, 1, n),
    )


@pytest.fixture(scope="module")
def categorical_hgb(shop):
    """What models/scaffold.py writes for a categorical column: codes, told to the estimator."""
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(
        shop_features(OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
        HistGradientBoostingRegressor(categorical_features=[0], random_state=0),
    )
    return model.fit(X, shop["spent"])


@pytest.fixture(scope="module")
def unseen(shop) -> pd.DataFrame:
    """Rows a model meets after training: a colour it never saw, a size missing."""
    X = shop[["size", "count", "color", "promo"]].head(300).copy()
    X.loc[X.index[:50], "color"] = "purple"
    X.loc[X.index[40:90], "size"] = np.nan
    return X


@pytest.fixture(autouse=True)
def one_thread():
    # OpenMP threads of HistGradientBoosting crawl when the machine's cores are busy.
    with threadpool_limits(1):
        yield


def shop_features(encoder) -> ColumnTransformer:
    return ColumnTransformer(
        [("color", encoder, ["color"]), ("numbers", "passthrough", ["size", "count", "promo"])]
    )


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def converted(model, features: pd.DataFrame, task: str) -> OnnxPredictor:
    classes = list(model.classes_) if task == "classification" else None
    return OnnxPredictor(to_onnx(model, features, task), task, classes)


def assert_classified_as(model, X, got: Outputs, atol: float) -> None:
    """`got` has the model's own labels, and its probabilities within `atol`."""
    expected = default_predict(model, X)
    np.testing.assert_array_equal(got.predictions, expected.predictions)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=0, atol=atol)


def test_scaled_logistic_regression_gives_the_same_labels_and_probabilities(cancer):
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)

    got = converted(model, X, "classification")(records(X))

    assert_classified_as(model, X, got, atol=FLOAT64_ATOL)


def test_hist_gradient_boosting_on_numeric_features_gives_the_same_labels_and_probabilities(
    cancer,
):
    X, y = cancer
    model = HistGradientBoostingClassifier(random_state=0).fit(X, y)

    got = converted(model, X, "classification")(records(X))

    assert_classified_as(model, X, got, atol=FLOAT32_ATOL)


def test_ordinal_encoded_strings_and_passthrough_numbers_classify_as_the_pipeline_does(shop):
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(
        shop_features(OrdinalEncoder()), HistGradientBoostingClassifier(random_state=0)
    ).fit(X, shop["bought"])

    predictor = converted(model, X, "classification")
    got = predictor(records(X))

    assert_classified_as(model, X, got, atol=FLOAT32_ATOL)
    assert [i.type for i in predictor.session.get_inputs()] == [
        "tensor(float)",  # a tree model: its thresholds are float32, so is its input
        "tensor(int64)",
        "tensor(string)",
        "tensor(bool)",
    ]


def test_a_given_prepare_feeds_its_dataframe_columns_to_the_graph(shop):
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(shop_features(OneHotEncoder()), Ridge()).fit(X, shop["spent"])
    # The package's prepare renames a request field: only its output names the graph's columns.
    renamed = [{("colour" if k == "color" else k): v for k, v in r.items()} for r in records(X)]

    predictor = OnnxPredictor(
        to_onnx(model, X, "regression"),
        "regression",
        prepare=lambda recs: pd.DataFrame(recs).rename(columns={"colour": "color"}),
    )
    got = predictor(renamed)

    np.testing.assert_allclose(got.predictions, model.predict(X), rtol=1e-12, atol=1e-9)


def test_one_hot_random_forest_converts_but_misses_parity_within_1e_6(shop):
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(
        shop_features(OneHotEncoder()), RandomForestRegressor(n_estimators=20, random_state=0)
    ).fit(X, shop["spent"])

    got = converted(model, X, "regression")(records(X))

    # Leaf values are float32 in ONNX: the parity check at registration has this to refuse.
    diff = np.abs(got.predictions - model.predict(X))
    assert diff.max() > 1e-6


def test_a_record_of_the_wrong_type_is_refused_naming_its_field(shop):
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(shop_features(OneHotEncoder()), Ridge()).fit(X, shop["spent"])
    predictor = converted(model, X, "regression")

    with pytest.raises(ValueError, match="field 'color': expected strings"):
        predictor([{**records(X)[0], "color": 3}])
    with pytest.raises(ValueError, match="field 'count': expected integers"):
        predictor([{**records(X)[0], "count": 2.5}])
    # None is a missing text (fed as MISSING_TEXT); NaN is not text, nor anything the predict
    # path gives a text column (it holds None there), so it is refused, never guessed at.
    with pytest.raises(ValueError, match="field 'color': expected strings"):
        predictor([{**records(X)[0], "color": float("nan")}])


def test_function_transformer_with_a_function_is_not_convertible(shop):
    X = shop[["size", "count"]]
    model = make_pipeline(FunctionTransformer(np.abs), Ridge()).fit(X, shop["spent"])

    with pytest.raises(NotConvertible, match=r"^FunctionTransformer with a function \(absolute\)"):
        to_onnx(model, X, "regression")


def test_transformed_target_regressor_is_not_convertible(shop):
    X = shop[["size", "count"]]
    model = TransformedTargetRegressor(Ridge(), func=np.exp, inverse_func=np.log).fit(
        X, shop["spent"]
    )

    with pytest.raises(NotConvertible, match=r"^TransformedTargetRegressor cannot be converted"):
        to_onnx(model, X, "regression")


def test_hist_gradient_boosting_with_categorical_features_predicts_as_the_pipeline_does(
    shop, unseen, categorical_hgb
):
    X = pd.concat([shop[["size", "count", "color", "promo"]], unseen])

    got = converted(categorical_hgb, X, "regression")(records(X))

    expected = categorical_hgb.predict(X)
    np.testing.assert_allclose(got.predictions, expected, rtol=1e-12, atol=1e-9)  # double trees


def test_categorical_hist_gradient_boosting_without_float_columns_still_sums_in_double(shop):
    # No float column: skl2onnx types the graph float32; the trees still run in double.
    X = shop[["count", "color"]]
    model = make_pipeline(
        ColumnTransformer([("c", OrdinalEncoder(), ["color"]), ("n", "passthrough", ["count"])]),
        HistGradientBoostingRegressor(categorical_features=[0], max_iter=100, random_state=0),
    ).fit(X, shop["spent"])

    got = converted(model, X, "regression")(records(X))

    np.testing.assert_allclose(got.predictions, model.predict(X), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("target", ["binary", "three classes"])
def test_categorical_hist_gradient_boosting_classifiers_give_the_same_labels_and_probabilities(
    shop, unseen, target
):
    X = shop[["size", "count", "color", "promo"]]
    y = (
        shop["bought"]
        if target == "binary"
        else pd.cut(shop["spent"], 3, labels=["lo", "mid", "hi"])
    )
    # Categories after the numbers: the estimator reorders its columns, the graph must not.
    features = ColumnTransformer(
        [
            ("numbers", "passthrough", ["size", "count", "promo"]),
            (
                "color",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ["color"],
            ),
        ]
    )
    model = make_pipeline(
        features,
        HistGradientBoostingClassifier(categorical_features=[3], max_iter=50, random_state=0),
    ).fit(X, y.astype(str))
    rows = pd.concat([X, unseen])

    got = converted(model, rows, "classification")(records(rows))

    expected = default_predict(model, rows)
    np.testing.assert_array_equal(got.predictions, expected.predictions)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=0, atol=FLOAT64_ATOL)


def test_categorical_trees_of_a_single_leaf_and_integer_labels_convert(shop):
    # Large leaves: once the classes are learnt, trees cannot split and stay one leaf each.
    X = shop[["size", "color"]].head(600)
    labels = np.where(X["color"] == "red", 3, np.where(X["size"] > 10, 7, 9))
    model = make_pipeline(
        ColumnTransformer([("c", OrdinalEncoder(), ["color"]), ("n", "passthrough", ["size"])]),
        HistGradientBoostingClassifier(
            categorical_features=[0], min_samples_leaf=120, max_iter=100, random_state=0
        ),
    ).fit(X, labels)
    trees = [tree for iteration in model[-1]._predictors for tree in iteration]
    assert 0 < sum(bool(t.nodes[0]["is_leaf"]) for t in trees) < len(trees)

    got = converted(model, X, "classification")(records(X))

    assert_classified_as(model, X, got, atol=FLOAT64_ATOL)


def test_lightgbm_classifier_in_a_pipeline_gives_the_same_labels_and_probabilities(cancer):
    X, y = cancer
    model = make_pipeline(
        StandardScaler(), LGBMClassifier(n_estimators=50, verbose=-1, n_jobs=1, random_state=0)
    ).fit(X, y)

    got = converted(model, X, "classification")(records(X))

    assert_classified_as(model, X, got, atol=FLOAT32_ATOL)


def test_lightgbm_regressor_in_a_pipeline_predicts_within_float32_rounding(shop):
    X = shop[["size", "count", "color", "promo"]]
    model = make_pipeline(
        shop_features(OrdinalEncoder()),
        LGBMRegressor(n_estimators=100, verbose=-1, n_jobs=1, random_state=0),
    ).fit(X, shop["spent"])

    got = converted(model, X, "regression")(records(X))

    # ONNX Runtime sums the leaves in float32: what ParityConfig's rtol allows for.
    np.testing.assert_allclose(got.predictions, model.predict(X), rtol=1e-5, atol=FLOAT32_ATOL)


def test_an_estimator_without_a_converter_is_not_convertible_in_one_line(shop):
    X = shop[["size", "count"]]
    model = make_pipeline(SplineTransformer(), Ridge()).fit(X, shop["spent"])

    with pytest.raises(NotConvertible) as refused:
        to_onnx(model, X, "regression")

    assert str(refused.value) == (
        "skl2onnx cannot convert Pipeline(SplineTransformer, Ridge): "
        "no converter for SplineTransformer"
    )


def test_an_unfitted_model_is_not_convertible(shop):
    X = shop[["size", "count"]]

    with pytest.raises(NotConvertible, match=r"^Pipeline\(StandardScaler, Ridge\) is not a fitted"):
        to_onnx(make_pipeline(StandardScaler(), Ridge()), X, "regression")


def test_a_date_column_is_not_convertible(shop):
    X = shop[["size", "count"]].assign(day=pd.Timestamp("2017-08-01"))
    model = make_pipeline(
        ColumnTransformer([("n", "passthrough", ["size", "count"])]), Ridge()
    ).fit(X, shop["spent"])

    with pytest.raises(NotConvertible, match="column 'day' is datetime64"):
        to_onnx(model, X, "regression")


def test_the_onnx_runtime_module_imports_neither_pandas_nor_scikit_learn():
    code = (
        "import sys, models.onnx_runtime; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn'}))"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"


def test_columns_named_like_the_graphs_own_variables_feed_the_right_inputs(cancer):
    X, y = cancer
    X = X.iloc[:, :3].set_axis(["X", "label", "probabilities"], axis=1)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)

    got = converted(model, X, "classification")(records(X))

    np.testing.assert_allclose(got.probabilities, model.predict_proba(X), rtol=0, atol=FLOAT64_ATOL)


def test_skl2onnx_alone_converts_categorical_splits_wrong_which_is_why_they_are_rewritten(
    shop, categorical_hgb, monkeypatch
):
    # When skl2onnx evaluates categorical splits correctly (onnx/sklearn-onnx#1051) this fails,
    # and training/onnx_trees.py can go.
    X = shop[["size", "count", "color", "promo"]]
    monkeypatch.setattr(onnx_trees, "rewrite", lambda onx, model: None)
    kinds = {"size": "float", "count": "int64", "color": "string", "promo": "bool"}
    graph = onnx_export._convert(categorical_hgb, kinds, "regression")

    got = OnnxPredictor(graph, "regression")(records(X))

    assert np.abs(got.predictions - categorical_hgb.predict(X)).max() > 1.0
