import re
from pathlib import Path

import pytest

from models import get_spec, metrics
from models.config import ConfigError, load_config, package_config
from training.__main__ import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_default_sales_config_loads_with_its_thresholds():
    cfg = load_config(get_spec("sales").config_path)
    assert {t.metric for t in cfg.gate.parsed()} == {"nwrmsle", "r2"}


def test_config_error_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "seed: 1\ngate:\n  thresholds:\n    nwrmsle: '<= 0.8'\nsplit:\n  validation_weeks: -3\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:6: split.validation_weeks:" in str(exc.value)


def test_config_rejects_unknown_keys(tmp_path):
    path = write(tmp_path, "seed: 1\nsead: 2\ngate:\n  thresholds: {}\n")
    with pytest.raises(ConfigError, match=r":2: sead: Extra inputs are not permitted"):
        load_config(path)


def test_config_rejects_unreadable_threshold(tmp_path):
    path = write(tmp_path, "seed: 1\ngate:\n  thresholds:\n    nwrmsle: 'about 0.8'\n")
    with pytest.raises(ConfigError, match=r":4: gate.thresholds: .*cannot read threshold"):
        load_config(path)


def test_config_rejects_invalid_yaml_with_line(tmp_path):
    path = write(tmp_path, "seed: 1\ngate: [\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: not valid YAML"):
        load_config(path)


PER_MODEL = """seed: 1
gate:
  thresholds:
    r2: '> 0'
loadtest:
  thresholds:
    p90: '< 120ms'
    {extra}
deploy:
  port_offset: 1
"""


def test_per_model_loadtest_thresholds_and_port_offset_load(tmp_path):
    cfg = load_config(write(tmp_path, PER_MODEL.format(extra="")))
    assert cfg.loadtest.thresholds == {"p90": "< 120ms"}
    assert cfg.deploy.port_offset == 1


def test_an_unreadable_per_model_load_test_bound_is_refused_naming_file_line_and_field(tmp_path):
    path = write(tmp_path, PER_MODEL.format(extra="p99: 'fast'"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:8: loadtest.thresholds.p99: Value error, cannot read bound 'fast'" in str(
        exc.value
    )


def test_a_per_model_bound_for_a_metric_the_load_test_does_not_measure_is_refused(tmp_path):
    path = write(tmp_path, PER_MODEL.format(extra="p95: '< 1s'"))
    with pytest.raises(
        ConfigError, match=r"config.yaml:8: loadtest.thresholds.p95.\[key\]: .*'p90'"
    ):
        load_config(path)


def test_a_per_model_bound_that_names_another_metric_is_refused(tmp_path):
    path = write(tmp_path, PER_MODEL.format(extra="rps: 'p90 < 3'"))
    with pytest.raises(ConfigError, match=r":8: loadtest.thresholds.rps: .*give the bound only"):
        load_config(path)


def test_bad_per_model_load_serving_and_deploy_values_name_their_lines(tmp_path):
    path = write(
        tmp_path,
        "seed: 1\ngate:\n  thresholds: {}\nloadtest:\n  load:\n    users: 0\n"
        "serving:\n  timeout_s: 0\ndeploy:\n  port_offset: -1\n"
        "  environments:\n    staging: {port: 80}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    for expected in (
        ":6: loadtest.load.users:",
        ":8: serving.timeout_s:",
        ":10: deploy.port_offset:",
        ":12: deploy.environments.staging.port:",
    ):
        assert expected in str(exc.value)


def test_the_config_recorded_with_a_model_serves_when_its_package_is_not_here():
    recorded = {"seed": 1, "gate": {"thresholds": {}}, "loadtest": {"thresholds": {"p90": "< 1s"}}}
    assert package_config("no_such_package", recorded).loadtest.thresholds == {"p90": "< 1s"}
    assert package_config("no_such_package") is None


def test_a_bad_recorded_config_is_refused_naming_the_model_and_field():
    recorded = {"seed": 1, "gate": {"thresholds": {}}, "deploy": {"port_offset": "far"}}
    with pytest.raises(ConfigError, match=r"recorded with model 'gone': deploy\.port_offset:"):
        package_config("gone", recorded)


def test_a_config_that_is_not_utf8_is_refused_naming_the_line_of_the_bad_byte(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes("seed: 1\ngate:\n  # r\xe9sum\xe9\n  thresholds: {}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config.yaml:3: not UTF-8 text: byte 0xe9"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "seed: 1\ngate:\n  thresholds: {}\nseed: 2\n",
            ":4: duplicate key 'seed' (first at line 1)",
        ),
        (
            "seed: 1\nparams: {a: 1}\ngate:\n  thresholds: {}\nparams:\n  a: 2\n",
            ":5: duplicate key 'params' (first at line 2)",
        ),
        (
            "seed: 1\ngate:\n  thresholds:\n    r2: '> 0'\n    r2: '> 0.5'\n",
            ":5: duplicate key 'r2' (first at line 4)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}{message}")):
        load_config(path)


def test_keys_merged_from_an_anchor_may_be_overridden(tmp_path):
    path = write(
        tmp_path,
        "seed: 1\ngate:\n  thresholds: {}\nparams:\n  <<: {max_iter: 5, lr: 1}\n  lr: 2\n",
    )
    assert load_config(path).params == {"max_iter": 5, "lr": 2}


def test_training_exits_2_on_a_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# caf\xe9\nseed: 1\ngate:\n  thresholds: {}\n")
    assert main(["--config", str(path), "run"]) == 2
    assert "config.yaml:1: not UTF-8 text: byte 0xe9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (
            "  thresholds:\n    rsme: '< 5'\n",
            ":4: gate.thresholds.rsme: no metric 'rsme' for this model "
            "(known: rmse, mae, r2, nwrmsle)",
        ),
        (
            "  thresholds: {}\n  ratchet:\n    metric: nwrmse\n    tolerance: 0.01\n",
            ":5: gate.ratchet.metric: no metric 'nwrmse' for this model",
        ),
    ],
)
def test_a_gate_on_a_metric_the_models_task_does_not_compute_is_refused(tmp_path, gate, message):
    path = write(tmp_path, "seed: 1\ngate:\n" + gate)
    with pytest.raises(ConfigError, match=re.escape(f"{path}{message}")):
        load_config(path, metrics.names(get_spec("sales")))


def test_a_classifiers_gate_may_not_name_a_regression_metric(tmp_path):
    path = write(tmp_path, "seed: 1\ngate:\n  thresholds:\n    r2: '> 0'\n")
    with pytest.raises(ConfigError, match=r":4: gate.thresholds.r2: .*\(known: accuracy, f1_"):
        load_config(path, metrics.names(get_spec("cancer")))


def test_training_refuses_a_misspelt_gate_metric_before_reading_any_data(tmp_path, capsys):
    path = write(tmp_path, "seed: 1\ngate:\n  thresholds:\n    rsme: '< 5'\n")
    missing = tmp_path / "no-such-data.csv"
    assert main(["--config", str(path), "--data", str(missing), "run"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml:4: gate.thresholds.rsme: no metric 'rsme'" in err
    assert "no-such-data" not in err
