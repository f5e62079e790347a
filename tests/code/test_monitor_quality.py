"""Live quality and the monitor's checks, pure: the gate's own metric definitions on joined
actuals; each check passing, failing when it should, and inconclusive on too few rows; the
verdict decided by the live version only; monitoring/config.yaml refused with file, line, field."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import thresholds
from core.settings import ROOT
from models import get_spec
from models.sales.metrics import nwrmsle
from monitoring import config, monitor, quality, report

SALES = get_spec("sales")
BOUND = thresholds.parse("<= 0.80", metric="nwrmsle")


def joined(n: int, factor: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    actual = rng.uniform(1, 50, n)
    return pd.DataFrame(
        {
            "perishable": rng.random(n) < 0.3,
            "actual": actual,
            "prediction": actual * factor,
            "day": ["2026-12-03"] * (n // 2) + ["2026-12-04"] * (n - n // 2),
        }
    )


def test_live_nwrmsle_is_the_gates_weighted_definition():
    rows = joined(300, 1.3)
    live = quality.live_metrics(SALES, rows, rows["actual"], rows["prediction"])
    weights = np.where(rows["perishable"], 1.25, 1.0)
    assert live["nwrmsle"] == pytest.approx(nwrmsle(rows["actual"], rows["prediction"], weights))
    assert set(live) == {"rmse", "mae", "r2", "nwrmsle"}


def test_metrics_per_day_cover_each_day():
    days = quality.by_group(SALES, joined(300, 1.0), "day")
    assert {d: g["rows"] for d, g in days.items()} == {"2026-12-03": 150, "2026-12-04": 150}
    assert days["2026-12-03"]["metrics"]["nwrmsle"] == pytest.approx(0.0)


def test_a_live_metric_past_the_gate_bound_fails():
    (finding,) = quality.check_bounds({"nwrmsle": 1.4}, 500, [BOUND], min_rows=200)
    assert finding.status == "fail"
    assert (
        "nwrmsle = 1.4000 fails the gate's nwrmsle <= 0.80 over 500 joined rows" in finding.message
    )


def test_a_live_metric_within_the_gate_bound_passes():
    (finding,) = quality.check_bounds({"nwrmsle": 0.5}, 500, [BOUND], min_rows=200)
    assert finding.status == "pass"


def test_too_few_joined_rows_are_inconclusive_even_when_the_metric_is_bad():
    (finding,) = quality.check_bounds({"nwrmsle": 9.0}, 199, [BOUND], min_rows=200)
    assert finding.status == "inconclusive"


def test_a_version_worse_than_the_previous_by_more_than_the_ratchet_fails():
    finding = quality.check_ratchet(
        "nwrmsle", 0.01, ("r2", 300, {"nwrmsle": 0.60}), ("r1", 300, {"nwrmsle": 0.50}), 200
    )
    assert finding.status == "fail"
    assert "worse than r1's" in finding.message


def test_a_version_within_the_ratchet_of_the_previous_passes():
    finding = quality.check_ratchet(
        "nwrmsle", 0.01, ("r2", 300, {"nwrmsle": 0.505}), ("r1", 300, {"nwrmsle": 0.50}), 200
    )
    assert finding.status == "pass"


def test_the_ratchet_is_inconclusive_when_the_previous_version_has_too_few_rows():
    finding = quality.check_ratchet(
        "nwrmsle", 0.01, ("r2", 300, {"nwrmsle": 0.9}), ("r1", 10, {"nwrmsle": 0.5}), 200
    )
    assert finding.status == "inconclusive"


def test_a_higher_is_better_metric_ratchets_the_other_way():
    finding = quality.check_ratchet(
        "accuracy", 0.01, ("r2", 300, {"accuracy": 0.90}), ("r1", 300, {"accuracy": 0.95}), 200
    )
    assert finding.status == "fail"


def test_drift_fails_past_the_share_and_is_inconclusive_on_a_small_sample():
    assert quality.check_drift(["a", "b"], 3, 1000, 0.5, 500).status == "fail"
    assert quality.check_drift(["a"], 3, 1000, 0.5, 500).status == "pass"
    assert quality.check_drift(["a", "b"], 3, 100, 0.5, 500).status == "inconclusive"


def version(name: str, findings: list[quality.Finding], live: bool) -> monitor.Version:
    v = monitor.Version(name, "sales:x", name, 1, 1, {}, 0, "", "", live=live)
    v.findings = findings
    return v


def test_the_verdict_is_degraded_only_by_the_live_versions_failed_checks():
    fail = quality.Finding("gate:nwrmsle", "fail", 1.4, "", "live nwrmsle bad")
    ok = quality.Finding("gate:nwrmsle", "pass", 0.4, "", "fine")
    assert monitor.judge(version("r2", [fail], live=True)) == ("DEGRADED", ["live nwrmsle bad"])
    assert monitor.judge(version("r3", [ok], live=True))[0] == "HEALTHY"


def test_no_predictions_or_no_conclusive_check_is_no_data():
    maybe = quality.Finding("gate:nwrmsle", "inconclusive", None, "", "too few")
    assert monitor.judge(None)[0] == "NO DATA"
    assert monitor.judge(version("r3", [maybe], live=True)) == ("NO DATA", ["too few"])


def test_the_shipped_monitor_config_loads():
    cfg = config.load(ROOT / "monitoring" / "config.yaml")
    assert cfg.action("production") == "rollback"
    assert cfg.action("elsewhere") == "notify"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("window: 24 hours\n", "config.yaml:1: window: Value error, window '24 hours'"),
        ("quality:\n  min_rows: 0\n", "config.yaml:2: quality.min_rows:"),
        ("on_breach:\n  production: reboot\n", "config.yaml:2: on_breach.production:"),
    ],
)
def test_a_bad_monitor_config_is_refused_naming_line_and_field(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.load(path)


def test_an_on_breach_key_that_is_no_deploy_environment_is_refused_listing_them(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("window: 24h\non_breach: {prod: rollback, staging: notify}\n")
    with pytest.raises(
        config.ConfigError,
        match=r"config.yaml:2: on_breach.prod: no environment 'prod' in the deploy config "
        r"\(have: staging, production\)",
    ):
        config.load(path, ["staging", "production"])
    assert config.load(path).action("prod") == "rollback"  # without environments: unchecked


def test_the_summary_is_strict_json_a_metric_that_is_not_finite_written_as_null(tmp_path):
    # One joined row has no R2 (NaN); Python's json would write the bare word NaN, which jq,
    # JavaScript and Go refuse.
    v = version("r1", [], live=True)
    v.metrics = {"rmse": float("inf"), "r2": float("nan"), "mae": 1.5}
    result = monitor.Result("production", "sales", "24h", "", "", "HEALTHY", [], [v], {})
    report.write(result, tmp_path, {})

    def refuse(word: str):
        raise ValueError(f"not JSON: {word}")

    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert summary["versions"][0]["metrics"] == {"rmse": None, "r2": None, "mae": 1.5}
