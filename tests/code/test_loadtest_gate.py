import pytest

from core.thresholds import ThresholdError, parse
from core.yamlconf import ConfigError, load_yaml
from loadtests.gate import GateConfig, check, merge_thresholds, model_loadtest, resolve
from models import config as model_config
from models.config import LoadtestConfig

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


GLOBAL = GateConfig.model_validate(
    {
        "load": {"users": 8, "spawn_rate": 8, "rate_per_user": 10, "duration_s": 20, "warmup_s": 3},
        "thresholds": ["p90 < 50ms", "p99 < 250ms", "rps > 60"],
        "regression": {"p90_ratio": 1.25},
    }
)
OWN = LoadtestConfig.model_validate(
    {"thresholds": {"p90": "< 120ms"}, "load": {"users": 2}, "traffic": {"multi_record_size": 3}}
)


def test_a_models_own_threshold_replaces_the_global_one_of_that_metric_and_keeps_the_rest():
    _, gates = resolve(GLOBAL, OWN)
    assert {t.metric: t.text for t in gates} == {
        "p90": "p90 < 120ms",
        "p99": "p99 < 250ms",
        "rps": "rps > 60",
    }


def test_the_command_line_still_wins_over_a_models_own_threshold():
    _, gates = resolve(GLOBAL, OWN, "p90<80ms")
    assert {t.metric: t.value for t in gates}["p90"] == 80.0


def test_a_models_own_load_and_traffic_keys_replace_only_those_keys():
    cfg, _ = resolve(GLOBAL, OWN)
    assert (cfg.load.users, cfg.load.rate_per_user) == (2, 10)
    assert (cfg.traffic.multi_record_size, cfg.traffic.bodies) == (3, 2000)


def test_without_a_section_of_its_own_a_model_gets_the_global_gate():
    cfg, gates = resolve(GLOBAL, LoadtestConfig())
    assert cfg == GLOBAL
    assert [t.text for t in gates] == ["p90 < 50ms", "p99 < 250ms", "rps > 60"]


def test_the_gate_reads_a_models_section_from_its_package_config(tmp_path, monkeypatch):
    (tmp_path / "wine").mkdir()
    (tmp_path / "wine" / "config.yaml").write_text(
        "seed: 1\ngate:\n  thresholds: {}\nloadtest:\n  thresholds:\n    p90: '< 90ms'\n"
    )
    monkeypatch.setattr(model_config, "MODELS_DIR", tmp_path)
    assert model_loadtest("wine:abc123").thresholds == {"p90": "< 90ms"}
    assert model_loadtest(None) == LoadtestConfig()
