"""Behaviour of the default sales model: minimum functionality, direction, invariance, and
reproducibility."""

import numpy as np
import pytest

from models.config import load_config
from training.evaluate import evaluate
from training.gate import is_accepted
from training.train import train


@pytest.fixture(scope="module")
def features(sales_spec, sales_split):
    return sales_split[1][list(sales_spec.schema.features)].reset_index(drop=True)


def test_promotions_raise_predicted_sales(sales_model, features):
    on, off = features.assign(onpromotion=True), features.assign(onpromotion=False)
    lift = sales_model.predict(on) / np.maximum(sales_model.predict(off), 1e-9)
    assert np.median(lift) > 1.2


def test_holidays_raise_predicted_sales(sales_model, features):
    on, off = features.assign(holiday=True), features.assign(holiday=False)
    assert sales_model.predict(on).mean() > 1.1 * sales_model.predict(off).mean()


def test_predictions_are_never_negative(sales_model, features):
    assert (sales_model.predict(features) >= 0).all()


def test_prediction_of_a_row_does_not_depend_on_its_batch(sales_model, features):
    batch = sales_model.predict(features.head(64))
    single = np.array([sales_model.predict(features.iloc[[i]])[0] for i in range(64)])
    np.testing.assert_allclose(batch, single, rtol=1e-12)


def test_unknown_item_still_gets_a_prediction_not_an_error(sales_model, features):
    row = features.head(1).assign(item_nbr=1)
    assert np.isfinite(sales_model.predict(row)).all()


def test_two_trainings_with_the_same_seed_give_identical_predictions(sales_spec, sales_split):
    a = train(sales_spec, sales_split[0], {"max_iter": 50}, 42)
    b = train(sales_spec, sales_split[0], {"max_iter": 50}, 42)
    X = sales_split[1][list(sales_spec.schema.features)]
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_quality_gate_passes_the_default_model(sales_spec, sales_split):
    cfg = load_config(sales_spec.config_path)
    model = train(sales_spec, sales_split[0], cfg.params, cfg.seed)
    metrics = evaluate(sales_spec, model, sales_split[1])["overall"]
    assert is_accepted(metrics, cfg.gate.parsed()).accepted


def test_quality_gate_fails_a_near_constant_model(sales_spec, sales_split):
    # The CD4ML workshop's lesson: a too-simple model must not pass nwrmsle <= 0.80.
    cfg = load_config(sales_spec.config_path)
    weak = train(sales_spec, sales_split[0], {"max_iter": 1, "learning_rate": 0.01}, cfg.seed)
    result = is_accepted(evaluate(sales_spec, weak, sales_split[1])["overall"], cfg.gate.parsed())
    assert not result.accepted
    assert any(f.startswith("nwrmsle = ") and "fails nwrmsle <= 0.80" in f for f in result.failures)


def test_metrics_are_reported_per_item_family(sales_spec, sales_model, sales_split):
    report = evaluate(sales_spec, sales_model, sales_split[1])
    assert set(report["by_family"]) == set(sales_split[1]["family"].unique())
    assert all("nwrmsle" in m for m in report["by_family"].values())
