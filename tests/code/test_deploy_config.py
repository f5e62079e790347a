"""deploy/config.yaml: the shipped file is valid, and every mistake names its file, line and field."""

from __future__ import annotations

import pytest
import yaml

from core.settings import ROOT
from core.yamlconf import ConfigError
from deploy import config

SHIPPED = ROOT / "deploy" / "config.yaml"


def write(tmp_path, data) -> object:
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_shipped_config_has_staging_and_production_on_distinct_local_ports():
    cfg = config.load(SHIPPED)
    assert set(cfg.environments) >= {"staging", "production"}
    assert cfg.env("staging").local.port != cfg.env("production").local.port


def test_a_non_loopback_host_is_rejected_naming_line_and_field(tmp_path):
    data = shipped()
    data["environments"]["staging"]["local"]["host"] = "0.0.0.0"
    with pytest.raises(
        ConfigError, match=r"deploy.yaml:\d+: environments.staging.local.host: .*loopback"
    ):
        config.load(write(tmp_path, data))


def test_min_available_not_below_replicas_is_rejected(tmp_path):
    data = shipped()
    data["environments"]["production"]["kubernetes"]["min_available"] = 2
    with pytest.raises(ConfigError, match=r"environments\.production\.kubernetes: .*min_available"):
        config.load(write(tmp_path, data))


def test_two_environments_on_one_port_are_rejected(tmp_path):
    data = shipped()
    data["environments"]["staging"]["local"]["port"] = data["environments"]["production"]["local"][
        "port"
    ]
    with pytest.raises(ConfigError, match="share a local port"):
        config.load(write(tmp_path, data))


def test_overriding_the_target_needs_that_target_section():
    cfg = config.load(SHIPPED)
    with pytest.raises(ConfigError, match=r"staging.*kubernetes.*no .kubernetes. section"):
        cfg.env("staging", "kubernetes")


def test_an_unknown_environment_is_named():
    with pytest.raises(ConfigError, match="unknown environment 'prod'"):
        config.load(SHIPPED).env("prod")


def test_an_environment_given_twice_is_refused_naming_both_lines(tmp_path):
    text = SHIPPED.read_text()
    path = tmp_path / "deploy.yaml"
    path.write_text(text + "  staging:\n    target: local\n")
    first = text.splitlines().index("  staging:") + 1
    last = len(text.splitlines()) + 1
    with pytest.raises(
        ConfigError, match=rf"deploy.yaml:{last}: duplicate key 'staging' \(first at line {first}\)"
    ):
        config.load(path)
