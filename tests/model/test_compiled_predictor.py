"""The sales model's compiled predictor reproduces the fitted Pipeline, and the platform admits a
compiled predictor only when it does."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier

from models.sales.compiled import build_predictor
from serving.forest import Forest, NotCompilable
from training.compiled import parity
from training.settings import ROOT


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


def test_parity_admits_the_sales_compiled_predictor(
    sales_spec, fitted_schema, sales_model, sales_split
):
    verdict, _ = parity(sales_spec, fitted_schema, sales_model, sales_split[1])
    assert verdict["admitted"] is True
    assert verdict["rows"] == len(sales_split[1])


def test_parity_refuses_a_compiled_predictor_that_drifts(
    sales_spec, fitted_schema, sales_model, sales_split
):
    def drifting(model):
        predict = build_predictor(model)
        return lambda records: predict(records) * (1 + 1e-4)

    spec = dataclasses.replace(sales_spec, compile=drifting)
    verdict, _ = parity(spec, fitted_schema, sales_model, sales_split[1])
    assert verdict["admitted"] is False
    assert verdict["reason"].startswith("differs by up to")


def test_parity_refuses_a_compiled_predictor_that_raises(
    sales_spec, fitted_schema, sales_model, sales_split
):
    def broken(model):
        raise NotCompilable("not this one")

    spec = dataclasses.replace(sales_spec, compile=broken)
    verdict, _ = parity(spec, fitted_schema, sales_model, sales_split[1])
    assert verdict == {"admitted": False, "reason": "NotCompilable: not this one"}


def test_forest_refuses_a_multiclass_model():
    X, y = make_classification(n_samples=200, n_classes=3, n_informative=4, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    with pytest.raises(NotCompilable):
        Forest(model)


def test_a_saved_compiled_predictor_runs_without_scikit_learn_or_pandas(
    sales_model, sales_spec, valid_records, tmp_path
):
    path = tmp_path / "compiled.pkl"
    joblib.dump(build_predictor(sales_model), path)
    script = (
        "import json, sys, joblib\n"
        "predict = joblib.load(sys.argv[1])\n"
        "out = predict(json.loads(sys.argv[2])).tolist()\n"
        "print(json.dumps({'out': out, 'loaded': [m for m in ('sklearn', 'pandas') if m in sys.modules]}))\n"
    )
    records = valid_records[:20]
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(records)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    np.testing.assert_allclose(
        report["out"], sklearn_predictions(sales_model, sales_spec, records), rtol=1e-9
    )
