"""A classifier's live quality: its logged class probabilities stored with each record (a
regressor's rows have none), carried through the join, and scored: the live ROC AUC and log loss
of `python -m monitoring run` are sklearn's on the same rows, the gate's roc_auc bound is checked
like the others, and an actual of a class the model never predicts leaves ROC AUC out with why.

The cancer model (the brought-in classifier) is fitted here on half of its data and predicts the
other half; its predictions are written in the prediction log's format and the actuals stored by
the feedback command (`make feedback`), as in production, without a deployed service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from core import thresholds
from core.settings import ROOT
from models import get_spec
from models.cancer.data import FEATURES, load
from models.cancer.estimator import build_estimator
from monitoring import quality, store, synthetic

NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
CANCER = get_spec("cancer")
BOUND = thresholds.parse(">= 0.97", metric="roc_auc")


@pytest.fixture(scope="module")
def served() -> pd.DataFrame:
    """The held-out half of the data with the model's prediction and {class: p} per row."""
    data = load(42)
    fit, held = data.iloc[::2], data.iloc[1::2].reset_index(drop=True)
    model = build_estimator({"C": 1.0, "max_iter": 1000}, 42).fit(
        fit[list(FEATURES)], fit["diagnosis"]
    )
    proba = model.predict_proba(held[list(FEATURES)])
    held["prediction"] = model.predict(held[list(FEATURES)])
    held["proba"] = pd.Series(
        [dict(zip(model.classes_, map(float, p), strict=True)) for p in proba], dtype=object
    )
    return held


def write_log(logs: Path, served: pd.DataFrame) -> None:
    lines = [
        synthetic.prediction_line(
            f"c{i}",
            NOW + timedelta(seconds=i),
            "cancer:test",
            [{f: float(row[f]) for f in FEATURES}],
            [row["prediction"]],
            2.0,
            probabilities=[row["proba"]],
        )
        for i, (_, row) in enumerate(served.iterrows())
    ]
    synthetic.write_lines(logs / "predictions.jsonl", lines)


def monitor(tmp_path: Path, served: pd.DataFrame, actual: list[str], junk: dict | None = None):
    """Log the predictions, store `actual` (one per row) with the feedback command, run the
    monitor (report only); (its result, summary.json's live version). `junk`: {row: value} sent
    to the actuals log instead, as POST /feedback accepted them before it checked actuals."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    write_log(logs, served)
    junk = junk or {}
    synthetic.write_lines(
        logs / "actuals.jsonl", [synthetic.actual_line(f"c{i}", a, NOW) for i, a in junk.items()]
    )
    csv = tmp_path / "actuals.csv"
    csv.write_text(
        "request_id,actual,observed_at\n"
        + "".join(f"c{i},{a},{NOW.isoformat()}\n" for i, a in enumerate(actual) if i not in junk)
    )
    env = {
        **os.environ,
        "BENTOGATE_MONITOR_DIR": str(tmp_path / "monitor"),
        "BENTOGATE_DEPLOY_DIR": str(tmp_path / "deploy"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "monitoring", *args, "production", "--model", "cancer"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    stored = cli("feedback", "--file", str(csv))
    assert stored.returncode == 0, stored.stderr
    result = cli("run", "--logs", str(logs), "--out", str(out), "--no-act", "--now",
                 (NOW + timedelta(hours=1)).isoformat())  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    (live,) = [v for v in summary["versions"] if v["live"]]
    return result, live, out


def check(live: dict, name: str) -> dict:
    return next(c for c in live["checks"] if c["check"] == name)


@pytest.fixture(scope="module")
def true_actuals(tmp_path_factory, served):
    """The monitor run on the true labels: (its result, the live version, its report folder)."""
    return monitor(tmp_path_factory.mktemp("true"), served, served["diagnosis"].tolist())


def test_live_roc_auc_and_log_loss_of_a_classifier_are_sklearns_on_the_same_rows(
    true_actuals, served
):
    result, live, out = true_actuals
    assert result.returncode == 0, result.stdout + result.stderr
    classes = list(served["proba"][0])
    proba = np.array([[p[c] for c in classes] for p in served["proba"]])
    malignant = proba[:, classes.index("malignant")]
    assert live["joined"] == len(served)
    assert live["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(served["diagnosis"] == "malignant", malignant)
    )
    assert live["metrics"]["log_loss"] == pytest.approx(
        log_loss(served["diagnosis"], proba, labels=classes)
    )
    assert check(live, "gate:roc_auc")["status"] == "pass"
    prom = (out / "metrics.prom").read_text()
    assert 'metric="roc_auc"} ' in prom and 'metric="log_loss"} ' in prom
    assert "roc_auc " in (out / "summary.md").read_text()
    page = (out / "report.html").read_text()
    assert "<th>roc_auc<br>" in page and "roc_auc &gt;= 0.97" in page  # its column, its bound
    assert "passes all 3 checks that had enough data" in page
    assert "What to do next:</b> Nothing to do" in page


def test_drift_on_fewer_records_than_its_minimum_is_inconclusive_and_not_computed(
    true_actuals, served
):
    # 500 records needed (monitoring/config.yaml): the finding was inconclusive already, but the
    # comparison ran anyway, Evidently's import included.
    _, live, out = true_actuals
    said = f"{len(served)} live records sampled, fewer than the 500 needed"
    assert (check(live, "drift")["status"], check(live, "drift")["message"]) == (
        "inconclusive",
        said,
    )
    assert live["drift"] is None and live["drift_html"] is None
    assert not list(out.glob("drift-*.html"))
    assert f"No drift computed: {said}." in (out / "report.html").read_text()


def test_junk_labels_among_a_classifiers_actuals_are_skipped_and_counted_and_roc_auc_judged(
    tmp_path, served
):
    # Two junk labels used to leave ROC AUC out ("not a class the model predicts"): any client
    # could switch the check, and the rollback on its breach, off.
    result, live, out = monitor(
        tmp_path, served, served["diagnosis"].tolist(), junk={3: "lots", 7: "NaN"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (live["joined"], live["skipped_actuals"]) == (len(served) - 2, 2)
    assert check(live, "gate:roc_auc")["status"] == "pass"
    assert "roc_auc" not in live["unmeasured"]
    assert live["skipped_why"] in {
        f"expected one of the model's classes ('benign', 'malignant'), got a string {j!r}"
        for j in ("lots", "NaN")
    }
    assert (
        'bentogate_monitor_skipped_actuals{environment="production",model="cancer"'
        in (out / "metrics.prom").read_text()
    )


def test_the_gates_roc_auc_bound_fails_when_the_actuals_disagree_with_the_probabilities(
    tmp_path, served
):
    rng = np.random.default_rng(0)
    flip = rng.random(len(served)) < 0.3
    other = {"benign": "malignant", "malignant": "benign"}
    actual = [other[a] if f else a for a, f in zip(served["diagnosis"], flip, strict=True)]
    result, live, out = monitor(tmp_path, served, actual)
    assert result.returncode == 1, result.stdout + result.stderr
    finding = check(live, "gate:roc_auc")
    assert finding["status"] == "fail"
    assert finding["measured"] == pytest.approx(
        roc_auc_score(np.array(actual) == "malignant", [p["malignant"] for p in served["proba"]])
    )
    assert (
        "live roc_auc = " in finding["message"]
        and "fails the gate's roc_auc >= 0.97" in (finding["message"])
    )
    assert "live roc_auc = " in result.stdout  # the verdict line names it
    page = (out / "report.html").read_text()
    verdict = page[page.index('<div class="verdict">') : page.index("</div>")]
    assert "production/cancer: DEGRADED</h1>" in verdict
    assert "<b>gate:roc_auc</b>: live roc_auc = " in verdict  # what failed and why, up top
    assert "What to do next:</b> This run took no action" in verdict
    assert "<code>make rollback ENV=production MODEL=cancer</code>" in verdict
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[0].startswith("## Monitor production/cancer: DEGRADED (")
    assert summary[4].startswith("**What to do next:** This run took no action")


def test_an_actual_class_the_model_never_predicts_leaves_roc_auc_out_saying_why(served):
    rows = served.head(250)
    actual = ["benign"] * 249 + ["unknown"]
    metrics, why = quality.live_quality(
        CANCER, rows, actual, rows["prediction"].tolist(), rows["proba"].tolist()
    )
    assert "roc_auc" not in metrics and "log_loss" not in metrics
    assert "accuracy" in metrics
    assert "actual class 'unknown' is not one the model predicts" in why["roc_auc"]
    (finding,) = quality.check_bounds(metrics, 250, [BOUND], 200, why)
    assert finding.status == "inconclusive"
    assert "roc_auc not measured live: actual class 'unknown'" in finding.message


def test_actuals_of_a_single_class_leave_roc_auc_out_and_keep_log_loss(served):
    rows = served[served["diagnosis"] == "benign"]
    metrics, why = quality.live_quality(
        CANCER, rows, rows["diagnosis"].tolist(), rows["prediction"].tolist(),
        rows["proba"].tolist(),
    )  # fmt: skip
    assert "log_loss" in metrics and "roc_auc" not in metrics
    assert why["roc_auc"].startswith("needs actuals of every class")


def test_rows_without_logged_probabilities_leave_roc_auc_out_saying_how_many(served):
    rows = served.head(10)
    proba = [*rows["proba"].tolist()[:9], None]
    metrics, why = quality.live_quality(
        CANCER, rows, rows["diagnosis"].tolist(), rows["prediction"].tolist(), proba
    )
    assert "roc_auc" not in metrics
    assert why["roc_auc"] == "1 of 10 joined rows have no class probabilities logged"


def test_a_roc_auc_within_the_gate_bound_passes_and_below_it_fails():
    assert quality.check_bounds({"roc_auc": 0.98}, 300, [BOUND], 200)[0].status == "pass"
    assert quality.check_bounds({"roc_auc": 0.95}, 300, [BOUND], 200)[0].status == "fail"


def test_class_probabilities_are_stored_per_record_and_a_regressors_rows_have_none(tmp_path):
    record = {"x": 1.0}
    synthetic.write_lines(
        tmp_path / "predictions.jsonl",
        [
            synthetic.prediction_line(
                "multi", NOW, "cancer:t", [record, record], ["a", "b"], 1.0,
                probabilities=[{"a": 0.7, "b": 0.3}, {"a": 0.1, "b": 0.9}],
            ),
            synthetic.prediction_line("sales", NOW, "sales:t", [record], [3.5], 1.0),
        ],
    )  # fmt: skip
    with store.connect(tmp_path / "s.duckdb") as con:
        store.ingest_predictions(con, tmp_path)
        got = con.execute("SELECT key, proba FROM predictions ORDER BY key").fetchall()
    assert [(k, json.loads(p) if p else None) for k, p in got] == [
        ("multi#0", {"a": 0.7, "b": 0.3}),
        ("multi#1", {"a": 0.1, "b": 0.9}),
        ("sales", None),
    ]


def test_a_store_created_before_probabilities_were_kept_gains_the_column(tmp_path):
    path = tmp_path / "old.duckdb"
    old = store.SCHEMA.split("-- A store created")[0].replace(", proba JSON", "")
    con = duckdb.connect(str(path))
    con.execute(old)
    con.close()
    with store.connect(path) as con:
        synthetic.write_lines(
            tmp_path / "predictions.jsonl",
            [synthetic.prediction_line("r", NOW, "cancer:t", [{"x": 1}], ["a"], 1.0,
                                       probabilities=[{"a": 1.0}])],
        )  # fmt: skip
        assert store.ingest_predictions(con, tmp_path).rows == 1
        assert con.execute("SELECT proba FROM predictions").fetchone() == ('{"a":1.0}',)


def test_a_ratchet_on_an_unmeasured_roc_auc_is_inconclusive_saying_why():
    finding = quality.check_ratchet(
        "roc_auc", 0.01, ("r2", 300, {"accuracy": 0.9}), ("r1", 300, {"roc_auc": 0.99}), 200,
        [("r2", {"roc_auc": "needs actuals of every class"})],
    )  # fmt: skip
    assert finding.status == "inconclusive"
    assert finding.message == "roc_auc not measured: needs actuals of every class (r2)"
