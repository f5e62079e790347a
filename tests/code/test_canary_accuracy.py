"""The canary's accuracy check (deploy/accuracy.py) on a tiny written prediction log and actuals
log: pass, fail (past the gate's bound, or worse than stable by more than the ratchet), and
inconclusive on too few joined rows, never a pass on no data; each call judges only what was
logged since the previous one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from core import thresholds
from core.settings import ROOT
from deploy import accuracy, canary, config
from deploy.canary import AccuracyChecks, CanaryConfig, CheckInput, ReleaseStats
from models import get_spec
from models.actuals import rule as actual_rule

CANARY, STABLE = "r0002", "r0001"
GATE = [thresholds.parse("<= 0.80", metric="nwrmsle")]
RATCHET = ("nwrmsle", 0.01)
CFG = AccuracyChecks(min_joined=20)


def stats(release: str) -> ReleaseStats:
    return ReleaseStats(release, requests=100, failures=0, error_rate=0.0, p90_ms=10.0)


INPUT = CheckInput(stats(CANARY), stats(STABLE), canary.Checks(), min_requests=10)


def write(path: Path, records: list[dict]) -> None:
    with open(path, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def log(directory: Path, release: str, n: int, factor: float, actuals: int | None = None) -> None:
    """`n` single-record predictions answered by `release` (prediction = actual x factor), and
    actuals for the first `actuals` of them (all by default)."""
    preds, truth = [], []
    for i in range(n):
        actual = 5.0 + i % 40
        rid = f"{release}-{i}"
        preds.append(
            {
                "event": "prediction",
                "request_id": rid,
                "release": release,
                "routed_to": release,
                "inputs": [{"store_nbr": 1, "perishable": i % 3 == 0}],
                "outputs": {"predictions": [actual * factor]},
            }
        )
        truth.append({"event": "actual", "request_id": rid, "actual": actual})
    write(directory / accuracy.PREDICTIONS, preds)
    write(directory / accuracy.ACTUALS, truth[: n if actuals is None else actuals])


def check(directory: Path, cfg: AccuracyChecks = CFG) -> accuracy.AccuracyCheck:
    return accuracy.AccuracyCheck(directory, get_spec("sales"), GATE, RATCHET, cfg)


def test_a_canary_as_accurate_as_stable_passes(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.05)
    log(tmp_path, CANARY, 30, 1.05)

    result = c(INPUT)

    assert result.verdict == canary.PASS, result.detail
    assert result.name == "accuracy"


def test_a_canary_worse_than_stable_by_more_than_the_ratchet_fails(tmp_path):
    c = check(tmp_path, AccuracyChecks(min_joined=20, gate_bounds=False))
    log(tmp_path, STABLE, 30, 1.0)
    log(tmp_path, CANARY, 30, 1.3)  # nwrmsle ~0.26 worse; within the gate's 0.80

    result = c(INPUT)

    assert result.verdict == canary.FAIL
    assert "worse than r0001" in result.detail


def test_a_canary_past_the_gates_bound_fails_even_when_stable_is_as_bad(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 4.0)
    log(tmp_path, CANARY, 30, 4.0)

    result = c(INPUT)

    assert result.verdict == canary.FAIL
    assert "fails the gate's nwrmsle <= 0.80" in result.detail


def test_too_few_joined_actuals_for_a_release_is_inconclusive(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.0)
    log(tmp_path, CANARY, 30, 9.0, actuals=19)  # very bad, but one row short of judging

    result = c(INPUT)

    assert result.verdict == canary.INCONCLUSIVE
    assert "r0002 19" in result.detail and "20 each" in result.detail


def test_no_logs_at_all_is_inconclusive_never_a_pass(tmp_path):
    result = check(tmp_path)(INPUT)

    assert result.verdict == canary.INCONCLUSIVE


def test_predictions_logged_before_the_check_was_made_are_not_judged(tmp_path):
    log(tmp_path, CANARY, 30, 9.0)  # an earlier canary's, before this one started
    log(tmp_path, STABLE, 30, 1.0)
    c = check(tmp_path)

    assert c(INPUT).verdict == canary.INCONCLUSIVE


def test_each_call_judges_only_what_was_logged_since_the_previous_one(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.0)
    log(tmp_path, CANARY, 30, 9.0)
    assert c(INPUT).verdict == canary.FAIL

    assert c(INPUT).verdict == canary.INCONCLUSIVE  # nothing new: no data, not the old fail


def test_a_rotated_prediction_log_is_followed_to_its_end_and_into_the_new_file(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.0)
    (tmp_path / accuracy.PREDICTIONS).rename(tmp_path / (accuracy.PREDICTIONS + ".1"))
    log(tmp_path, CANARY, 30, 1.0)

    result = c(INPUT)

    assert result.verdict == canary.PASS, result.detail


def test_records_of_a_multi_record_request_join_by_their_index(tmp_path):
    preds = accuracy.predictions(
        [
            {
                "event": "prediction",
                "request_id": "q",
                "release": CANARY,
                "inputs": [{"a": 1}, {"a": 2}],
                "outputs": {"predictions": [1.0, 2.0]},
            }
        ]
    )

    assert preds == {
        "q#0": (CANARY, {"a": 1}, 1.0, None),
        "q#1": (CANARY, {"a": 2}, 2.0, None),
    }


def test_a_failing_accuracy_check_fails_the_canary_analysis(tmp_path):
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.0)
    log(tmp_path, CANARY, 30, 9.0)
    cfg = CanaryConfig(min_requests=1, checks={"p90_ratio_max": None, "p90_max_ms": None})

    result = canary.analyse([], CANARY, STABLE, cfg, extra=(c,), budget_ms=1000)

    assert result.verdict == canary.FAIL
    assert "accuracy fail" in result.describe()


def test_the_accuracy_check_is_off_in_the_shipped_config():
    cfg = config.load(ROOT / "deploy" / "config.yaml")

    assert all(e.canary.checks.accuracy is None for e in cfg.environments.values())


def test_an_accuracy_check_needing_no_joined_rows_is_refused():
    with pytest.raises(ValidationError, match="min_joined"):
        AccuracyChecks(min_joined=0)


def test_the_check_for_a_model_takes_its_gates_bounds_and_ratchet(tmp_path):
    c = accuracy.for_model(tmp_path, "sales", AccuracyChecks(ratchet_tolerance=0.05))

    assert [t.metric for t in c.thresholds] == ["nwrmsle", "r2"]
    assert c.ratchet == ("nwrmsle", 0.05)


def test_the_rest_of_a_log_rotated_during_the_interval_is_read_before_the_new_file(tmp_path):
    log(tmp_path, STABLE, 5, 1.0)  # before the check: not judged
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.0)
    (tmp_path / accuracy.PREDICTIONS).rename(tmp_path / (accuracy.PREDICTIONS + ".1"))
    log(tmp_path, CANARY, 30, 9.0)

    result = c(INPUT)

    assert result.verdict == canary.FAIL, result.detail


def test_a_prediction_stable_made_for_a_late_canary_counts_for_stable(tmp_path):
    preds = accuracy.predictions(
        [
            {
                "event": "prediction",
                "request_id": "late",
                "release": STABLE,
                "routed_to": CANARY,
                "fallback": True,
                "inputs": [{"a": 1}],
                "outputs": {"predictions": [3.0]},
            }
        ]
    )

    assert preds == {"late": (STABLE, {"a": 1}, 3.0, None)}


def test_lines_that_are_no_record_of_the_log_are_skipped_not_fatal(tmp_path):
    c = check(tmp_path)
    (tmp_path / accuracy.PREDICTIONS).write_text('not json\n["a list"]\n{"event": "prediction"}\n')
    log(tmp_path, STABLE, 30, 1.0)
    log(tmp_path, CANARY, 30, 1.0)

    assert c(INPUT).verdict == canary.PASS


def log_classifier(directory: Path, release: str, n: int, informative: bool) -> None:
    """`n` predictions of a two-class model, half of each actual class, all labelled right, each
    with its logged class probabilities: ranking the classes right, or all 0.5 (ROC AUC 0.5:
    only the probabilities can tell)."""
    preds, truth = [], []
    for i in range(n):
        actual = i % 2
        p1 = (0.6 if actual == 1 else 0.4) if informative else 0.5
        rid = f"{release}-c{i}"
        preds.append(
            {
                "event": "prediction",
                "request_id": rid,
                "release": release,
                "inputs": [{"x": i}],
                "outputs": {
                    "predictions": [actual],
                    "probabilities": [{"0": 1 - p1, "1": p1}],
                },
            }
        )
        truth.append({"event": "actual", "request_id": rid, "actual": actual})
    write(directory / accuracy.PREDICTIONS, preds)
    write(directory / accuracy.ACTUALS, truth)


def test_a_classifier_canary_is_judged_on_the_roc_auc_of_its_logged_probabilities(tmp_path):
    c = accuracy.for_model(
        tmp_path, "cancer", AccuracyChecks(min_joined=20, ratchet_tolerance=None)
    )
    log_classifier(tmp_path, STABLE, 40, informative=True)
    log_classifier(tmp_path, CANARY, 40, informative=True)
    assert c(INPUT).verdict == canary.PASS

    log_classifier(tmp_path, STABLE, 40, informative=True)
    log_classifier(tmp_path, CANARY, 40, informative=False)
    result = c(INPUT)

    assert result.verdict == canary.FAIL, result.detail
    assert "live roc_auc = 0.5000 fails the gate's roc_auc >= 0.97" in result.detail


def test_junk_actuals_in_the_log_are_skipped_not_a_verdict_lost(tmp_path):
    # An older release still serving (its Bento before /feedback checked actuals) may have logged
    # "lots" or NaN: the canary is judged on the rest, as the monitor judges its window.
    c = check(tmp_path)
    log(tmp_path, STABLE, 30, 1.05)
    log(tmp_path, CANARY, 30, 1.05)
    junk = [("lots", f"{CANARY}-0"), (float("nan"), f"{CANARY}-1"), (1e308, f"{STABLE}-0")]
    write(
        tmp_path / accuracy.ACTUALS,
        [{"event": "actual", "request_id": rid, "actual": a} for a, rid in junk],
    )

    result = c(INPUT)

    assert result.verdict == canary.PASS, result.detail


def test_junk_class_labels_in_the_log_are_skipped_by_a_classifiers_canary(tmp_path):
    # Two labels that are no class of the model ("lots", logged before /feedback checked them)
    # among 40 made a third class of macro F1 (0.65 < 0.92): the canary failed and was rolled back.
    c = accuracy.for_model(
        tmp_path, "cancer", AccuracyChecks(min_joined=20, ratchet_tolerance=None)
    )
    log_classifier(tmp_path, STABLE, 40, informative=True)
    log_classifier(tmp_path, CANARY, 40, informative=True)
    junk = [{"event": "actual", "request_id": f"{CANARY}-c{i}", "actual": "lots"} for i in (0, 1)]
    write(tmp_path / accuracy.ACTUALS, junk)

    result = c(INPUT)

    assert result.verdict == canary.PASS, result.detail


def test_a_regressors_canary_skips_actuals_past_the_bound_its_record_sets(tmp_path):
    # 1e11 is a number, and within the cap of a model with no recorded target range; the canary
    # model's record (targets 5 to 44) bounds its actuals at -385 to 434, as /feedback does.
    rule = actual_rule("regression", target={"min": 5.0, "max": 44.0})
    c = accuracy.AccuracyCheck(tmp_path, get_spec("sales"), GATE, RATCHET, CFG, rule)
    log(tmp_path, STABLE, 30, 1.05)
    log(tmp_path, CANARY, 30, 1.05)
    write(
        tmp_path / accuracy.ACTUALS,
        [{"event": "actual", "request_id": f"{CANARY}-0", "actual": 1e11}],
    )

    result = c(INPUT)

    assert result.verdict == canary.PASS, result.detail
