"""Registration admits a faster runtime only if it reproduces the package's predict path: an ONNX
conversion of the fitted model is refused when the package's own predict step changes outputs,
and the model then serves through scikit-learn, answering what the predict path answers; and when
it does not answer rows with missing values (nullable columns) as the predict path does. A
LightGBM pipeline, and a HistGradientBoosting splitting on categories, are admitted to ONNX."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

import models
from models import get_spec
from models import runtimes as loaders
from models.config import ParityConfig, PersistenceConfig
from models.contract import Column, FeatureSchema, ModelSpec, Outputs
from models.predict import default_predict, predict_records, prepare
from training import runtimes
from training.split import split

# What skops names in a LightGBM pipeline beyond the platform's trusted types: a model package
# using LightGBM lists these under persistence.trusted in its config.yaml (README).
LIGHTGBM_TRUSTED = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
]


def sharpened(model, features) -> Outputs:
    """The package's own predict step: probabilities squared and renormalised (labels kept)."""
    out = default_predict(model, features)
    assert out.probabilities is not None
    p = out.probabilities**2
    return Outputs(out.predictions, p / p.sum(axis=1, keepdims=True))


@pytest.fixture(scope="module")
def cancer():
    spec = get_spec("cancer")
    data = spec.default_data(42)
    train_df, valid_df = split(data, spec, models.config.load_config(spec.config_path).split, 42)
    model = spec.build_estimator({"max_iter": 1000}, 42)
    model.fit(train_df[list(spec.schema.features)], train_df[spec.schema.target])
    return spec, model, spec.schema.records(valid_df)


@pytest.fixture(scope="module")
def shop_spec() -> ModelSpec:
    """A brought-in model with a category column, as models/scaffold.py writes one."""
    rng = np.random.default_rng(11)
    n = 2000
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n).round(2),
            "count": rng.integers(0, 50, n),
            "color": rng.choice([f"c{i}" for i in range(12)], n),
            "promo": rng.random(n) < 0.3,
        }
    )
    effect = frame["color"].map({f"c{i}": v for i, v in enumerate(rng.normal(0, 3, 12))})
    frame["spent"] = effect * 5 + frame["size"] + 2 * frame["promo"] + rng.normal(0, 1, n)
    schema = FeatureSchema(
        columns=(
            Column(name="size", kind="float"),
            Column(name="count", kind="int"),
            Column(name="color", kind="category"),
            Column(name="promo", kind="bool"),
            Column(name="spent", kind="float"),
        ),
        features=("size", "count", "color", "promo"),
        target="spent",
    )

    def build(params, seed):
        features = ColumnTransformer(
            [
                (
                    "categories",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    ["color"],
                ),
                ("numeric", "passthrough", ["size", "count", "promo"]),
            ]
        )
        model = HistGradientBoostingRegressor(categorical_features=[0], random_state=seed)
        return make_pipeline(features, model)

    return ModelSpec(
        name="shop",
        task="regression",
        schema=schema,
        build_estimator=build,
        default_data=lambda seed: frame,
        config_path=Path("models/shop/config.yaml"),
    )


def trust_lightgbm(name, tmp_path, monkeypatch):
    """Model `name`'s reviewed config trusts LightGBM's types (BENTOGATE_CONFIG names it)."""
    config = tmp_path / "config" / "config.yaml"
    config.parent.mkdir()
    trusted = {"persistence": {"trusted": LIGHTGBM_TRUSTED}}
    config.write_text(yaml.safe_dump({"seed": 42, "gate": {"thresholds": {}}, **trusted}))
    monkeypatch.setenv("BENTOGATE_CONFIG", str(config))
    monkeypatch.setenv("BENTOGATE_MODEL", name)


def admit(spec, model, records, tmp_path, monkeypatch):
    # The sklearn runtime loads the package by name: let the name give the spec under test.
    monkeypatch.setattr(models, "get_spec", lambda name: spec)
    expected = predict_records(spec, model, records)
    classes = model.classes_.tolist() if spec.task == "classification" else None
    verdicts, files = runtimes.admit(
        spec, model, records, expected, classes, ParityConfig(), tmp_path
    )
    return verdicts, files, expected, classes


def fitted(spec, model, seed=42):
    data = spec.default_data(seed)
    train_df, valid_df = split(data, spec, models.config.SplitConfig(), seed)
    model.fit(prepare(spec, spec.schema.records(train_df)), train_df[spec.schema.target])
    return model, spec.schema.records(valid_df)


def test_onnx_that_reproduces_the_default_path_is_admitted_and_chosen(
    cancer, tmp_path, monkeypatch
):
    spec, model, records = cancer
    verdicts, files, _, _ = admit(spec, model, records, tmp_path, monkeypatch)
    assert verdicts["onnx"]["admitted"] is True, verdicts["onnx"]
    assert verdicts["onnx"]["feeds"] == "records"
    assert runtimes.chosen(verdicts) == "onnx"
    assert files["onnx"].is_file()


def test_onnx_that_ignores_the_packages_predict_step_is_refused_and_sklearn_serves(
    cancer, tmp_path, monkeypatch
):
    spec, model, records = cancer
    edited = dataclasses.replace(spec, predict=sharpened)

    verdicts, files, expected, classes = admit(edited, model, records, tmp_path, monkeypatch)

    assert verdicts["onnx"]["admitted"] is False
    assert verdicts["onnx"]["reason"].startswith("probabilities differ by up to")
    assert "onnx" not in files and not (tmp_path / "model.onnx").exists()
    assert runtimes.chosen(verdicts) == "sklearn"
    served = loaders.load(
        "sklearn",
        tmp_path,
        model_name="cancer",
        task="classification",
        classes=classes,
        custom_prepare=False,
    )(records)
    assert served.predictions.tolist() == expected.predictions.tolist()
    assert served.probabilities is not None and expected.probabilities is not None
    np.testing.assert_allclose(served.probabilities, expected.probabilities)


@pytest.fixture(scope="module")
def cancer_with_gaps(cancer):
    """The cancer package with three nullable measurements, trained on rows where a fifth of them
    are missing; its validation records hold none (as a small validation set may not)."""
    spec, _, records = cancer
    gaps = ("worst_perimeter", "worst_concave_points", "mean_concave_points")
    schema = spec.schema.model_copy(
        update={
            "columns": tuple(
                c.model_copy(update={"nullable": c.name in gaps}) for c in spec.schema.columns
            )
        }
    )
    data = spec.default_data(42)
    holes = np.random.default_rng(0).random((len(data), len(gaps))) < 0.2
    for i, name in enumerate(gaps):
        data.loc[holes[:, i], name] = np.nan
    return dataclasses.replace(spec, schema=schema), data, records


def fit(spec, data, estimator):
    return estimator.fit(data[list(spec.schema.features)], data[spec.schema.target])


def test_onnx_is_admitted_only_if_it_answers_rows_with_missing_values_as_the_predict_path(
    cancer_with_gaps, tmp_path, monkeypatch
):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    spec, data, records = cancer_with_gaps
    assert not any(v is None for r in records for v in r.values())
    boosted = fit(spec, data, HistGradientBoostingClassifier(max_iter=30, random_state=0))
    # A tree sends NaN where scikit-learn learned; its ONNX conversion does not: labels differ.
    tree = fit(spec, data, DecisionTreeClassifier(random_state=0))
    # As a package listing the tree under persistence.trusted in its reviewed config would.
    trusts_trees = PersistenceConfig(trusted=["sklearn.tree._tree.Tree"])
    monkeypatch.setattr(loaders, "persistence", lambda name: trusts_trees)

    (tmp_path / "boosted").mkdir(), (tmp_path / "tree").mkdir()
    kept, _, _, _ = admit(spec, boosted, records, tmp_path / "boosted", monkeypatch)
    refused, files, _, _ = admit(spec, tree, records, tmp_path / "tree", monkeypatch)

    assert refused["onnx"]["admitted"] is False
    assert "labels differ" in refused["onnx"]["reason"]
    assert "onnx" not in files and runtimes.chosen(refused) == "sklearn"
    assert kept["onnx"]["admitted"] is True, kept["onnx"]
    assert kept["onnx"]["rows_with_missing"] == 4 * runtimes.PROBE_ROWS  # 3 fields, then all


def test_an_estimator_that_refuses_missing_values_is_named_with_the_nullable_columns(
    cancer_with_gaps, cancer, tmp_path, monkeypatch
):
    from training.train import train
    from training.validate import DataValidationError

    spec, data, records = cancer_with_gaps
    _, fitted_without_gaps, _ = cancer  # a logistic regression, fitted on rows without gaps

    with pytest.raises(DataValidationError) as at_training:
        train(spec, data, {"max_iter": 1000}, 42)
    with pytest.raises(DataValidationError) as at_registration:
        admit(spec, fitted_without_gaps, records, tmp_path, monkeypatch)

    for exc in (at_training, at_registration):
        assert "'mean_concave_points', 'worst_perimeter', 'worst_concave_points' are nullable" in (
            str(exc.value)
        )
        assert "put a SimpleImputer in its Pipeline" in str(exc.value)
        # Said once as "drop the rows with gaps and nullable=True": drop what, from where?
        assert str(exc.value).endswith(
            "drop the rows with gaps from the data and nullable=True from those columns"
        )


def test_a_lightgbm_classifier_pipeline_is_admitted_to_onnx_by_parity(
    cancer, tmp_path, monkeypatch
):
    spec, _, records = cancer
    trust_lightgbm("cancer", tmp_path, monkeypatch)
    model, records = fitted(
        spec,
        make_pipeline(StandardScaler(), LGBMClassifier(n_estimators=100, verbose=-1, n_jobs=1)),
    )

    verdicts, files, _, _ = admit(spec, model, records, tmp_path, monkeypatch)

    assert verdicts["onnx"]["admitted"] is True, verdicts["onnx"]
    assert runtimes.chosen(verdicts) == "onnx"
    assert files["onnx"].is_file()


def test_a_lightgbm_regressor_pipeline_is_admitted_to_onnx_by_parity(
    shop_spec, tmp_path, monkeypatch
):
    trust_lightgbm("shop", tmp_path, monkeypatch)
    features = ColumnTransformer(
        [("categories", OrdinalEncoder(), ["color"])], remainder="passthrough"
    )
    model, records = fitted(
        shop_spec, make_pipeline(features, LGBMRegressor(n_estimators=100, verbose=-1, n_jobs=1))
    )

    verdicts, _, _, _ = admit(shop_spec, model, records, tmp_path, monkeypatch)

    assert verdicts["onnx"]["admitted"] is True, verdicts["onnx"]
    assert runtimes.chosen(verdicts) == "onnx"


def test_a_hist_gradient_boosting_with_categorical_features_is_admitted_to_onnx_by_parity(
    shop_spec, tmp_path, monkeypatch
):
    model, records = fitted(shop_spec, shop_spec.build_estimator({}, 42))

    verdicts, _, _, _ = admit(shop_spec, model, records, tmp_path, monkeypatch)

    assert verdicts["onnx"]["admitted"] is True, verdicts["onnx"]
    assert verdicts["onnx"]["max_abs_diff"] < 1e-9  # its trees run in double
    assert runtimes.chosen(verdicts) == "onnx"


@pytest.fixture(scope="module")
def shop_with_gaps(shop_spec) -> ModelSpec:
    """shop with about 5% of its colors missing: a nullable category, as the scaffold marks one."""
    frame = shop_spec.default_data(42).copy()
    frame["color"] = frame["color"].astype(object)
    frame.loc[np.random.default_rng(5).random(len(frame)) < 0.05, "color"] = None
    schema = shop_spec.schema.model_copy(
        update={
            "columns": tuple(
                c.model_copy(update={"nullable": True}) if c.name == "color" else c
                for c in shop_spec.schema.columns
            )
        }
    )
    return dataclasses.replace(shop_spec, schema=schema, default_data=lambda seed: frame)


def scaffolds_encoder(estimator):
    return make_pipeline(
        ColumnTransformer(
            [
                (
                    "categories",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    ["color"],
                ),
                ("numeric", "passthrough", ["size", "count", "promo"]),
            ]
        ),
        estimator,
    )


def one_hot_ridge():
    return make_pipeline(
        ColumnTransformer(
            [
                ("categories", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                ("numeric", StandardScaler(), ["size", "count", "promo"]),
            ]
        ),
        Ridge(),
    )


@pytest.mark.parametrize(
    "estimator",
    [
        lambda: scaffolds_encoder(HistGradientBoostingRegressor(categorical_features=[0])),
        lambda: scaffolds_encoder(LGBMRegressor(n_estimators=50, verbose=-1, n_jobs=1)),
        one_hot_ridge,
    ],
    ids=["scaffolds-hgb", "lightgbm", "one-hot-ridge"],
)
def test_a_nullable_category_no_longer_keeps_a_model_off_onnx(
    estimator, shop_with_gaps, tmp_path, monkeypatch
):
    # Refused outright before: "column 'color' has missing values: an ONNX string input cannot
    # hold them". A missing color is fed as MISSING_TEXT, which the converted copy's encoder lists
    # where scikit-learn's learned None: the same code, or the same one-hot column.
    trust_lightgbm("shop", tmp_path, monkeypatch)
    model, records = fitted(shop_with_gaps, estimator())
    assert any(r["color"] is None for r in records)

    verdicts, _, _, _ = admit(shop_with_gaps, model, records, tmp_path, monkeypatch)

    assert verdicts["onnx"]["admitted"] is True, verdicts["onnx"]
    assert verdicts["onnx"]["rows_with_missing"] > 0
    assert runtimes.chosen(verdicts) == "onnx"


def test_a_golden_null_text_that_bentoml_drops_is_put_back_so_the_sklearn_runtime_is_ready(
    shop_with_gaps, tmp_path
):
    # Model metadata is written without None values (BentoML refuses them): a golden record's null color came
    # back absent, the predict path read NaN (a missing value to scikit-learn's encoder) where
    # registration had None (a category), and the sklearn runtime never became ready (0.026 off).
    import bentoml

    from core import registry
    from core.settings import ROOT, get_settings
    from serving.runtime import golden_matches, load_served_model

    model, records = fitted(shop_with_gaps, shop_with_gaps.build_estimator({}, 42))
    golden = [r for r in records if r["color"] is None][:1] + records[:2]
    out = predict_records(shop_with_gaps, model, golden)
    meta = {
        "task": "regression",
        "feature_schema": shop_with_gaps.schema.model_dump(mode="json"),
        "golden": {"records": golden, "predictions": out.predictions.tolist()},
    }
    (tmp_path / "model.skops").write_bytes(b"not read by this test")
    tag = registry.register(
        "golden_null", metadata=meta, git_commit="test", files=[tmp_path / "model.skops"]
    )
    assert "color" not in bentoml.models.get(tag).info.metadata["golden"]["records"][0]

    served = load_served_model(get_settings(model_tag=tag), ROOT)

    assert served.golden is not None and served.golden["records"][0]["color"] is None
    assert golden_matches(served, lambda rs: predict_records(shop_with_gaps, model, rs)) == (
        True,
        "",
    )


def test_the_nan_refusal_names_the_nullable_numbers_not_a_text_its_encoder_takes(shop_with_gaps):
    # A missing text reaches the estimator as None, a category to its encoder: the helper's
    # trial was told its text column 'segment' was refused, where only numbers were.
    from training.train import train
    from training.validate import DataValidationError

    frame = shop_with_gaps.default_data(42).copy()
    frame.loc[frame.index % 20 == 3, "size"] = np.nan
    schema = shop_with_gaps.schema.model_copy(
        update={
            "columns": tuple(
                c.model_copy(update={"nullable": True}) if c.name == "size" else c
                for c in shop_with_gaps.schema.columns
            )
        }
    )
    spec = dataclasses.replace(
        shop_with_gaps, schema=schema, build_estimator=lambda p, s: one_hot_ridge()
    )

    with pytest.raises(DataValidationError) as refused:
        train(spec, frame, {}, 42)

    assert "column 'size' is nullable" in str(refused.value)
    assert "color" not in str(refused.value)
