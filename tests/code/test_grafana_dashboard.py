"""The Grafana dashboard in the repository reads only metrics bentogate exports: the service's
Prometheus metrics (declared in service.py) and the monitor's textfile metrics (what
monitoring/report.py writes); a panel naming anything else fails here."""

from __future__ import annotations

import json
import re

import pytest

from core.settings import ROOT
from monitoring import monitor, report

DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
SUFFIXES = {"Counter": ("_total",), "Histogram": ("_bucket", "_sum", "_count"), "Gauge": ("",)}


def service_metrics() -> set[str]:
    declared = re.findall(
        r'(Counter|Histogram|Gauge)\(\s*"(\w+)"', (ROOT / "service.py").read_text()
    )
    assert declared, "service.py declares no Prometheus metric"
    return {name + suffix for kind, name in declared for suffix in SUFFIXES[kind]}


def textfile_metrics() -> set[str]:
    version = monitor.Version(
        "r0001", "sales:abc", "r0001", 10, 12, {"avg": 1.0, "p99": 2.0}, 1, "", "",
        joined=5, metrics={"nwrmsle": 0.5}, drift={"drifted_features": [], "features": 7},
    )  # fmt: skip
    result = monitor.Result("production", "sales", "24h", "", "", "HEALTHY", [], [version], {})
    return set(re.findall(r"^# TYPE (\w+) ", report.prometheus(result), re.MULTILINE))


def panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def metrics_of(expr: str) -> set[str]:
    return set(re.findall(r"\b(bentogate_\w+)", expr))


@pytest.mark.parametrize("panel", panels(), ids=lambda p: p["title"])
def test_every_panel_reads_only_metrics_bentogate_exports(panel):
    exported = service_metrics() | textfile_metrics()
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        used = metrics_of(target["expr"])
        assert used, target["expr"]
        assert used <= exported, used - exported


def test_the_dashboard_shows_the_verdict_latency_and_live_quality():
    used = {m for p in panels() for t in p["targets"] for m in metrics_of(t["expr"])}
    assert {
        "bentogate_monitor_verdict",
        "bentogate_predict_seconds_bucket",
        "bentogate_predictions_total",
        "bentogate_monitor_live_metric",
        "bentogate_monitor_drift_share",
    } <= used


def test_a_panel_reading_a_metric_nobody_exports_is_caught():
    assert (
        not metrics_of("rate(bentogate_not_exported_total[5m])")
        <= service_metrics() | textfile_metrics()
    )
