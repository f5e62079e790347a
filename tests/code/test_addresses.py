"""Each model's stable address in each environment: the environment's port + the model's offset
(or a port of its own); two models on one port are refused before anything starts."""

from __future__ import annotations

import pytest

from core.settings import ROOT
from core.yamlconf import ConfigError
from deploy import addresses, config
from models import config as model_config
from models.config import DeployConfig as ModelDeploy
from models.scaffold import next_port_offset

CFG = config.load(ROOT / "deploy" / "config.yaml")
STAGING, PRODUCTION = CFG.env("staging").local.port, CFG.env("production").local.port


def test_each_model_answers_at_its_environments_port_plus_its_offset():
    ports = addresses.ports(CFG, {"sales": ModelDeploy(), "wine": ModelDeploy(port_offset=1)})
    assert ports == {
        ("staging", "sales"): STAGING,
        ("production", "sales"): PRODUCTION,
        ("staging", "wine"): STAGING + 1,
        ("production", "wine"): PRODUCTION + 1,
    }


def test_a_model_may_name_its_own_port_for_one_environment():
    wine = ModelDeploy.model_validate(
        {"port_offset": 1, "environments": {"staging": {"port": 4321}}}
    )
    ports = addresses.ports(CFG, {"wine": wine})
    assert (ports[("staging", "wine")], ports[("production", "wine")]) == (4321, PRODUCTION + 1)


def test_the_shipped_model_packages_have_distinct_addresses():
    ports = addresses.ports(CFG, addresses.package_deploys())
    assert len(set(ports.values())) == len(ports)
    assert ports[("production", "sales")] == PRODUCTION


def test_two_models_on_one_port_are_refused_naming_the_file_line_and_field(tmp_path, monkeypatch):
    for name in ("apples", "pears"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(
            "seed: 1\ngate:\n  thresholds: {}\ndeploy:\n  port_offset: 5\n"
        )
    monkeypatch.setattr(model_config, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(addresses, "MODELS_DIR", tmp_path)
    models = {n: model_config.package_config(n).deploy for n in ("apples", "pears")}
    with pytest.raises(ConfigError) as exc:
        addresses.ports(CFG, models)
    message = str(exc.value)
    assert message.startswith(f"{tmp_path}/pears/config.yaml:5: deploy.port_offset: port")
    assert "already apples's in staging" in message
    assert f"{tmp_path}/apples/config.yaml:5: deploy.port_offset" in message


def test_a_model_offset_reaching_another_environments_port_is_refused():
    gap = PRODUCTION - STAGING
    with pytest.raises(ConfigError, match=f"port {PRODUCTION} in staging is already sales's"):
        addresses.ports(CFG, {"sales": ModelDeploy(), "wine": ModelDeploy(port_offset=gap)})


def test_a_model_naming_an_environment_deploy_config_does_not_have_is_refused():
    wine = ModelDeploy.model_validate({"environments": {"stagin": {"port": 4321}}})
    with pytest.raises(ConfigError, match=r"deploy\.environments\.stagin: no environment 'stagin'"):
        addresses.ports(CFG, {"wine": wine})


def test_a_new_model_is_scaffolded_with_the_next_free_offset(tmp_path):
    for name, section in (("sales", ""), ("wine", "deploy:\n  port_offset: 1\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(f"seed: 1\n{section}")
    assert next_port_offset(tmp_path) == 2
