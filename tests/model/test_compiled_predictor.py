"""The sales model's compiled predictor reproduces the fitted Pipeline, and the platform admits a
compiled predictor only when it does."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from core.settings import ROOT
from models import forest
from models.config import ParityConfig
from models.forest import Forest, NotCompilable
from models.predict import predict_records
from models.sales.compiled import build_predictor
from tests.fixtures.variants import Touch
from training import runtimes


@pytest.fixture(scope="module")
def fitted_schema(sales_spec, sales_clean):
    return sales_spec.schema.fitted(sales_clean)


@pytest.fixture(scope="module")
def valid_records(fitted_schema, sales_split):
    return fitted_schema.records(sales_split[1])


def sklearn_predictions(model, spec, records):
    return model.predict(pd.DataFrame(records, columns=list(spec.schema.features)))


@pytest.mark.parametrize("batch", [1, 16, 17, 1000])
def test_compiled_predictions_match_the_pipeline_for_every_batch_size(
    sales_model, sales_spec, valid_records, batch
):
    predict = build_predictor(sales_model)
    got = np.concatenate(
        [predict(valid_records[i : i + batch]) for i in range(0, len(valid_records), batch)]
    )
    np.testing.assert_allclose(
        got, sklearn_predictions(sales_model, sales_spec, valid_records), rtol=1e-9, atol=1e-9
    )


def admit(spec, model, fitted_schema, valid_df, scratch):
    records = fitted_schema.records(valid_df)
    expected = predict_records(spec, model, records)
    return runtimes.admit(spec, model, records, expected, None, ParityConfig(), scratch)


def drifting(predictor):
    """A compiled predictor off by a little (its baseline moved): it saves and loads like any
    other, so only the parity check can catch it."""
    predictor.forest.baseline += 1e-4
    return predictor


def test_parity_admits_the_sales_compiled_predictor(
    sales_spec, fitted_schema, sales_model, sales_split, tmp_path
):
    verdicts, files = admit(sales_spec, sales_model, fitted_schema, sales_split[1], tmp_path)
    assert verdicts["compiled"]["admitted"] is True
    assert verdicts["compiled"]["rows"] == len(sales_split[1])
    assert files["compiled"].is_file()
    assert runtimes.chosen(verdicts) == "compiled"


def test_parity_refuses_a_compiled_predictor_that_drifts(
    sales_spec, fitted_schema, sales_model, sales_split, tmp_path
):
    spec = dataclasses.replace(sales_spec, compile=lambda model: drifting(build_predictor(model)))
    verdicts, files = admit(spec, sales_model, fitted_schema, sales_split[1], tmp_path)
    assert verdicts["compiled"]["admitted"] is False
    assert verdicts["compiled"]["reason"].startswith("predictions differ by up to")
    assert "compiled" not in files and not (tmp_path / "compiled.npz").exists()
    assert runtimes.chosen(verdicts) != "compiled"


def test_parity_refuses_a_compiled_predictor_that_raises(
    sales_spec, fitted_schema, sales_model, sales_split, tmp_path
):
    def broken(model):
        raise NotCompilable("not this one")

    spec = dataclasses.replace(sales_spec, compile=broken)
    verdicts, _ = admit(spec, sales_model, fitted_schema, sales_split[1], tmp_path)
    assert verdicts["compiled"] == {"admitted": False, "reason": "NotCompilable: not this one"}


def test_forest_refuses_a_multiclass_model():
    X, y = make_classification(n_samples=200, n_classes=3, n_informative=4, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    with pytest.raises(NotCompilable):
        Forest(model)


@pytest.fixture(scope="module")
def small_forest():
    """A regressor on one categorical, one numeric (with NaN) and one integer feature."""
    rng = np.random.default_rng(0)
    n = 2000
    cat, num2 = rng.integers(0, 40, n).astype(float), rng.integers(0, 5, n).astype(float)
    num = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    y = np.sin(cat) + 0.3 * num2 + np.nan_to_num(num) + rng.normal(scale=0.1, size=n)
    X = np.column_stack([cat, num, num2])
    hgb = HistGradientBoostingRegressor(max_iter=50, categorical_features=[0], random_state=0)
    return hgb.fit(X, y), X


def test_forest_decides_edge_values_as_scikit_learn_does(small_forest):
    hgb, X = small_forest
    forest = Forest(hgb)
    edges = np.array(forest.edges[1])
    awkward = [
        [np.nan, np.inf, np.nan],  # missing category, infinite number, missing number
        [-1, -np.inf, 7],  # negative category, a value above every threshold
        [39.5, 0, 1e300],  # fractional category
        [300, np.nan, -1],  # category beyond the codes
        [45, edges[3], 2],  # unknown category; a number exactly at a threshold
        [0, edges[0], np.inf],
        [-0.5, edges[-1], 4.0],
    ]
    at_thresholds = np.column_stack([X[: len(edges), 0], edges, X[: len(edges), 2]])
    rows = np.vstack([X[:300], awkward, at_thresholds])
    expected = hgb._raw_predict(rows).ravel()
    np.testing.assert_allclose(forest.raw_predict(rows), expected, rtol=1e-12, atol=1e-12)
    one_by_one = [forest.predict_codes(np.array([forest.encode(r)]))[0] for r in rows.tolist()]
    np.testing.assert_allclose(one_by_one, expected, rtol=1e-12, atol=1e-12)


def test_a_forest_saved_in_another_format_is_refused(sales_model, tmp_path):
    predictor = build_predictor(sales_model)
    predictor.forest.format = Forest.FORMAT - 1
    forest.save(predictor, tmp_path / "compiled.npz")
    with pytest.raises(NotCompilable, match="register the model again"):
        forest.load(tmp_path / "compiled.npz")


def test_a_compiled_predictor_file_holding_a_pickle_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    payload = np.array([Touch(marker)], dtype=object)
    np.savez(tmp_path / "compiled.npz", meta=payload)
    with pytest.raises(NotCompilable, match="not a compiled predictor"):
        forest.load(tmp_path / "compiled.npz")
    assert not marker.exists()


def test_a_saved_compiled_predictor_runs_without_scikit_learn_or_pandas(
    sales_model, sales_spec, valid_records, tmp_path
):
    path = tmp_path / "compiled.npz"
    forest.save(build_predictor(sales_model), path)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from models import forest\n"
        "predict = forest.load(Path(sys.argv[1]))\n"
        "out = predict(json.loads(sys.argv[2])).tolist()\n"
        "print(json.dumps({'out': out, 'loaded': [m for m in ('sklearn', 'pandas') if m in sys.modules]}))\n"
    )
    records = valid_records[:20]
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(records)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    np.testing.assert_allclose(
        report["out"], sklearn_predictions(sales_model, sales_spec, records), rtol=1e-9
    )
