from core.thresholds import parse
from models.config import RatchetConfig, load_config
from training.gate import is_accepted, located

THRESHOLDS = [parse("<= 0.80", metric="nwrmsle"), parse("> 0", metric="r2")]
RATCHET = RatchetConfig(metric="nwrmsle", tolerance=0.01)


def test_gate_accepts_candidate_within_thresholds():
    result = is_accepted({"nwrmsle": 0.5, "r2": 0.7}, THRESHOLDS)
    assert result.accepted
    assert result.failures == []


def test_gate_rejects_candidate_over_threshold_naming_metric_value_and_bound():
    result = is_accepted({"nwrmsle": 0.85, "r2": 0.7}, THRESHOLDS)
    assert not result.accepted
    assert result.failures == ["nwrmsle = 0.8500 fails nwrmsle <= 0.80"]


def test_gate_rejects_candidate_missing_a_gated_metric():
    result = is_accepted({"nwrmsle": 0.5}, THRESHOLDS)
    assert not result.accepted
    assert "r2 was not measured" in result.failures[0]


def test_gate_rejects_candidate_worse_than_production_beyond_tolerance():
    result = is_accepted({"nwrmsle": 0.52, "r2": 0.7}, THRESHOLDS, {"nwrmsle": 0.50}, RATCHET)
    assert not result.accepted
    assert "worse than production" in result.failures[0]
    assert "0.5100" in result.failures[0]


def test_gate_accepts_candidate_slightly_worse_than_production_within_tolerance():
    result = is_accepted({"nwrmsle": 0.505, "r2": 0.7}, THRESHOLDS, {"nwrmsle": 0.50}, RATCHET)
    assert result.accepted


def test_gate_ratchet_on_higher_is_better_metric_rejects_a_drop():
    ratchet = RatchetConfig(metric="r2", tolerance=0.0)
    result = is_accepted({"nwrmsle": 0.5, "r2": 0.6}, THRESHOLDS, {"r2": 0.7}, ratchet)
    assert not result.accepted


def test_a_failed_bound_names_the_config_file_and_line_it_is_set_at(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "seed: 42\ngate:\n  # starter bounds\n  thresholds:\n"
        '    accuracy: ">= 0.70"\n    f1_macro: ">= 0.60"\n'
    )
    bounds = located(load_config(config).gate.parsed(), config)

    result = is_accepted({"accuracy": 0.9, "f1_macro": 0.5}, bounds)

    assert not result.accepted
    assert result.failures == [f"f1_macro = 0.5000 fails f1_macro >= 0.60 (set at {config}:6)"]
