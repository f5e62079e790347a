"""A routing.json that is not one (hand-edited, truncated by a full disk) breaks nothing that
serves: status says the environment is broken naming the file, deploy and rollback refuse in one
line naming the last good copy beside it, and down still stops what runs. Nothing is started."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from core.process import free_port
from core.settings import ROOT
from deploy import config, routing
from deploy.__main__ import main
from deploy.local import LIVE, SUPERSEDED, LocalTarget, Release, UsageError

STAGING = config.load(ROOT / "deploy" / "config.yaml").env("staging", "local")
BROKEN = '{"environment": "staging", "model": "sales", "port": "eighty"}'


def broken_state(directory, port: int) -> None:
    """Two releases of sales in the history, a good routing file saved, then broken."""
    releases = [
        Release("r0001", "sales_api:v1", "sales:v1", port=1, status=SUPERSEDED),
        Release("r0002", "sales_api:v2", "sales:v2", port=2, status=LIVE),
    ]
    directory.mkdir(parents=True)
    (directory / "history.json").write_text(json.dumps([asdict(r) for r in releases]))
    routing.save(directory, routing.Routing(environment="staging", model="sales", port=port))
    (directory / routing.ROUTING_FILE).write_text(BROKEN)


@pytest.fixture
def target(tmp_path) -> LocalTarget:
    t = LocalTarget("staging", STAGING, tmp_path, "sales", port=free_port(), log=lambda _: None)
    broken_state(t.dir, t.port)
    return t


def test_a_broken_routing_file_is_refused_naming_the_file_and_the_field(tmp_path):
    (tmp_path / routing.ROUTING_FILE).write_text(BROKEN)
    with pytest.raises(routing.RoutingError) as error:
        routing.load(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / routing.ROUTING_FILE}: port: ")


def test_every_routing_file_written_is_kept_as_the_last_good_copy(tmp_path):
    saved = routing.Routing(environment="staging", model="sales", port=4000, generation=7)
    routing.save(tmp_path, saved)
    (tmp_path / routing.ROUTING_FILE).write_text("{")
    good = routing.Routing.model_validate_json((tmp_path / routing.GOOD_COPY).read_text())
    assert good == saved


def test_status_reports_an_environment_with_a_broken_routing_file_as_broken(target):
    status = target.status()
    assert status["verdict"] == "broken"
    assert f"{target.dir / routing.ROUTING_FILE}: port: " in status["why"][0]
    assert status["why"][1] == f"{target.url} ConnectError"  # nothing serves in this test


@pytest.mark.parametrize("operation", ["deploy", "rollback", "adopt"])
def test_a_change_with_a_broken_routing_file_is_refused_in_one_line_naming_the_good_copy(
    target, operation
):
    history = (target.dir / "history.json").read_text()
    with pytest.raises(UsageError) as error:
        if operation == "deploy":
            target.deploy("sales_api:v3", "sales:v3")
        else:
            getattr(target, operation)()
    said = str(error.value)
    assert "\n" not in said
    assert said.startswith(f"staging/sales: the routing file is broken: {target.dir}/routing.json")
    good = target.dir / routing.GOOD_COPY
    assert f"`cp {good} {target.dir / routing.ROUTING_FILE}`" in said
    assert "`make down ENV=staging`" in said
    assert (target.dir / "history.json").read_text() == history
    assert (target.dir / routing.ROUTING_FILE).read_text() == BROKEN
    assert not (target.dir / "router.json").exists()  # no supervisor was started


def test_make_down_and_status_with_a_broken_routing_file_exit_without_a_traceback(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("BENTOGATE_DEPLOY_DIR", str(tmp_path))
    state = tmp_path / "staging" / "sales"
    broken_state(state, free_port())
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert " broken       r0002 sales_api:v2 (model sales:v2)\n" in out
    assert f"            - staging/sales: the routing file is broken: {state}" in out
    assert main(["rollback", "staging", "--model", "sales"]) == 2
    assert capsys.readouterr().err.startswith("error: staging/sales: the routing file is broken")
    assert main(["down", "staging"]) == 0
    assert capsys.readouterr().out.endswith("staging/sales: nothing running\n")
    assert not (state / routing.ROUTING_FILE).exists()
