"""Drift with Evidently, for real: validation rows held out from the reference (the training
distribution) are not flagged; the same rows shifted on purpose are, feature by feature and in
the predictions. One module: importing Evidently takes ~10 s."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import predict as path_
from monitoring import drift, quality


@pytest.fixture(scope="module")
def halves(sales_spec, sales_split, sales_model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validation rows with their predictions, split at random into a reference and live rows."""
    valid = sales_split[1].reset_index(drop=True)
    out = path_.predict_records(sales_spec, sales_model, sales_spec.schema.records(valid))
    frame = valid[list(sales_spec.schema.features)].copy()
    frame["prediction"] = out.predictions
    order = np.random.default_rng(0).permutation(len(frame))
    half = len(frame) // 2
    return frame.iloc[order[:half]], frame.iloc[order[half:]]


def test_held_out_rows_of_the_training_distribution_are_not_flagged(sales_spec, halves, tmp_path):
    reference, current = halves
    result = drift.compare(sales_spec.schema, "regression", reference, current, tmp_path / "d.html")
    assert result.drifted_features == []
    assert result.prediction is not None and not result.prediction.drifted
    assert (
        quality.check_drift(
            result.drifted_features, len(result.features), result.rows, 0.5, 500
        ).status
        == "pass"
    )
    assert (tmp_path / "d.html").stat().st_size > 0


def test_rows_shifted_on_purpose_are_flagged_per_feature_and_in_predictions(sales_spec, halves):
    reference, current = halves
    shifted = current.assign(
        onpromotion=True,
        perishable=~current["perishable"].astype(bool),
        family="PRODUCE",
        prediction=current["prediction"] * 3 + 10,
    )
    shifted["class"] = shifted["class"] + 3000
    result = drift.compare(sales_spec.schema, "regression", reference, shifted)
    assert {"onpromotion", "perishable", "family", "class"} <= set(result.drifted_features)
    assert result.prediction is not None and result.prediction.drifted
    assert "date" not in [c.column for c in result.columns]
    assert (
        quality.check_drift(
            result.drifted_features, len(result.features), result.rows, 0.5, 500
        ).status
        == "fail"
    )
