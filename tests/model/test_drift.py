"""Drift with Evidently, for real: validation rows held out from the reference (the training
distribution) are not flagged; the same rows shifted on purpose are, feature by feature and in
the predictions; missing values (nullable columns) neither crash the comparison nor go unreported.
One module: importing Evidently takes ~10 s."""

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


def test_rows_shifted_on_purpose_are_flagged_per_feature_and_in_predictions_by_the_worker(
    sales_spec, halves
):
    """Compared in drift.Worker(), the process `make monitor` compares in."""
    reference, current = halves
    shifted = current.assign(
        onpromotion=True,
        perishable=~current["perishable"].astype(bool),
        family="PRODUCE",
        prediction=current["prediction"] * 3 + 10,
    )
    shifted["class"] = shifted["class"] + 3000
    with drift.Worker() as worker:
        result = worker.submit(
            drift.compare, sales_spec.schema, "regression", reference, shifted
        ).result(timeout=120)
        with pytest.raises(ValueError, match="invalid literal"):  # its errors reach the caller
            worker.submit(int, "not a number").result(timeout=60)
    assert {"onpromotion", "perishable", "family", "class"} <= set(result.drifted_features)
    assert result.prediction is not None and result.prediction.drifted
    assert "date" not in [c.column for c in result.columns]
    assert (
        quality.check_drift(
            result.drifted_features, len(result.features), result.rows, 0.5, 500
        ).status
        == "fail"
    )


def test_missing_values_are_compared_without_crashing_and_their_share_is_reported():
    from models.contract import Column, FeatureSchema

    schema = FeatureSchema(
        columns=(
            Column(name="dose", kind="float", nullable=True),
            Column(name="weight", kind="float", nullable=True),
            Column(name="stage", kind="category", categories=("I", "II"), nullable=True),
            Column(name="y", kind="float"),
        ),
        features=("dose", "weight", "stage"),
        target="y",
    )
    rng = np.random.default_rng(0)

    def rows(n: int, missing: float) -> pd.DataFrame:
        holes = rng.random((n, 2)) < missing
        return pd.DataFrame(
            {
                "dose": np.where(holes[:, 0], np.nan, rng.normal(size=n)),
                "weight": rng.normal(70, 5, size=n),
                "stage": np.where(holes[:, 1], None, rng.choice(["I", "II"], n)),
                "prediction": rng.normal(size=n),
            }
        )

    live = rows(400, 0.25).assign(weight=np.nan)  # a feed that stopped sending the weight
    result = drift.compare(schema, "regression", rows(600, 0.05), live)

    by_name = {c.column: c for c in result.columns}
    assert by_name["dose"].missing == pytest.approx(0.25, abs=0.05)
    assert by_name["dose"].reference_missing == pytest.approx(0.05, abs=0.03)
    assert by_name["dose"].method.endswith("p_value")
    assert (by_name["weight"].method, by_name["weight"].missing) == ("all values missing", 1.0)
    assert "weight" in result.drifted_features
    assert by_name["stage"].missing == pytest.approx(0.25, abs=0.05)
    assert "stage" in result.drifted_features  # a fifth more rows without a stage: drift


def test_the_monitor_page_shows_each_columns_missing_share_live_and_in_the_reference():
    from monitoring import report
    from monitoring.monitor import Version

    column = drift.ColumnDrift("dose", "K-S p_value", 0.01, 0.05, True, 0.25, 0.05)
    live = Version(
        "wine:1",
        "wine",
        None,
        requests=10,
        records=10,
        latency_ms={},
        fallbacks=0,
        first_seen="",
        last_seen="",
        live=True,
        drift=drift.DriftResult(10, 20, [column]).to_dict(),
    )

    section = report._drift_section(live)

    assert "<th>missing (live / reference)</th>" in section
    assert "<td>25.0% / 5.0%</td>" in section
