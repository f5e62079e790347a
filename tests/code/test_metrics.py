import numpy as np
import pytest

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
