import numpy as np
import pytest

from models import get_spec, metrics
from models.sales.metrics import nwrmsle


def test_nwrmsle_is_zero_for_perfect_predictions():
    y = np.array([0.0, 3.0, 10.0])
    assert nwrmsle(y, y) == 0.0


def test_nwrmsle_matches_the_favorita_formula():
    y, p, w = np.array([1.0, 4.0]), np.array([3.0, 4.0]), np.array([1.25, 1.0])
    expected = np.sqrt(1.25 * (np.log(4) - np.log(2)) ** 2 / 2.25)
    assert nwrmsle(y, p, w) == pytest.approx(expected)


def test_nwrmsle_weighs_errors_on_perishables_more():
    y, p = np.array([1.0, 1.0]), np.array([3.0, 1.0])
    assert nwrmsle(y, p, np.array([1.25, 1.0])) > nwrmsle(y, p, np.array([1.0, 1.25]))


def test_nwrmsle_floors_negative_predictions_at_zero():
    assert nwrmsle(np.array([0.0]), np.array([-5.0])) == 0.0


def test_the_metric_names_a_gate_may_use_are_the_ones_evaluate_computes():
    sales, cancer = get_spec("sales"), get_spec("cancer")
    y = np.array([1.0, 2.0, 3.0])
    assert set(metrics.names(sales)) == set(metrics.regression_metrics(sales, y, y, None))
    labels, proba = np.array([0, 1, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]] * 2)
    computed = metrics.classification_metrics(labels, labels, proba, np.array([0, 1]))
    assert set(metrics.names(cancer)) == set(computed)
