import pytest

from core.thresholds import ThresholdError, parse
from core.yamlconf import ConfigError, load_yaml
from loadtests.gate import GateConfig, check, merge_thresholds

FIGURES = {"p50": 10.0, "p90": 20.0, "p99": 40.0, "error_rate": 0.0, "rps": 80.0}


def test_gate_passes_figures_within_thresholds():
    assert check(FIGURES, [parse("p90 < 50ms"), parse("rps > 60")], None, 1.25).accepted


def test_gate_fails_naming_threshold_value_and_limit():
    result = check({**FIGURES, "p90": 61.0}, [parse("p90 < 50ms")], None, 1.25)
    assert not result.accepted
    assert result.failures == ["p90 = 61.0 fails p90 < 50ms"]


def test_gate_fails_a_candidate_slower_than_production_by_more_than_the_ratio():
    result = check(FIGURES, [], {**FIGURES, "p90": 15.0}, 1.25)
    assert not result.accepted
    assert "1.25 x production p90 15.0 ms = 18.8 ms" in result.failures[0]


def test_command_line_thresholds_replace_the_same_metric_and_keep_the_rest():
    merged = merge_thresholds(["p90 < 50ms", "rps > 60"], "p90<20ms,error_rate<1%")
    assert {t.metric: t.value for t in merged} == {"p90": 20.0, "rps": 60.0, "error_rate": 0.01}


def test_unknown_metric_on_the_command_line_is_refused():
    with pytest.raises(ThresholdError, match="unknown metric 'p95'"):
        merge_thresholds([], "p95<20ms")


def test_gate_config_error_names_the_line(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text(
        "load:\n  users: 0\n  spawn_rate: 1\n  rate_per_user: 1\n  duration_s: 1\n"
        "  warmup_s: 0\nthresholds: []\nregression: {p90_ratio: 1.2}\n"
    )
    with pytest.raises(ConfigError, match=r"gate.yaml:2: load.users"):
        load_yaml(path, GateConfig)
