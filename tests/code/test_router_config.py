"""The router's configuration, rendered from the routing file and checked by the real `nginx -t`,
and the refusals that leave everything as it was (no release started)."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from core.process import free_port
from core.settings import ROOT
from deploy import config, health, nginx, shadow_report
from deploy.local import LocalTarget, UsageError
from deploy.routing import CanaryRoute, RoutedRelease, Routing

STAGING = config.load(ROOT / "deploy" / "config.yaml").env("staging", "local")


def release(n: int, routed: bool = True) -> RoutedRelease:
    return RoutedRelease(
        id=f"r{n:04d}",
        bento=f"sales_api:v{n}",
        model_tag=f"sales:v{n}",
        port=41000 + n,
        routed=routed,
    )


def routing(*releases: RoutedRelease, stable=None, previous=None, shadow=None, **kw) -> Routing:
    return Routing(
        **kw,
        environment="staging",
        model="sales",
        port=41000,
        releases=list(releases),
        stable=stable,
        previous=previous,
        shadow=shadow,
    )


@pytest.mark.parametrize(
    "state",
    [
        routing(),
        routing(release(1, routed=False)),
        routing(release(1), stable="r0001"),
        routing(release(1), release(2), release(3, routed=False), stable="r0002", previous="r0001"),
        routing(release(1), release(2, routed=False), stable="r0001", shadow="r0002"),
        routing(
            release(1),
            release(2),
            release(3),
            stable="r0002",
            previous="r0001",
            canary=CanaryRoute(release="r0003", weight=10),
        ),
        routing(
            release(2),
            release(3),
            stable="r0002",
            canary=CanaryRoute(release="r0003", weight=100, sticky_header="x-client-id"),
        ),
        routing(release(1), release(2), stable="r0002", previous="r0001", fallback="r0002"),
    ],
    ids=[
        "nothing",
        "starting",
        "stable",
        "stable-previous-starting",
        "shadow",
        "canary",
        "canary-sticky-100",
        "pinned-to-previous",
    ],
)
def test_every_routing_state_renders_a_configuration_nginx_accepts(state, tmp_path):
    nginx.check_rendered(state, tmp_path / "nginx")


def test_a_configuration_nginx_refuses_is_reported_in_its_own_words(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.render(routing(), tmp_path).replace("worker_processes 1;", "nonsense;"))
    with pytest.raises(nginx.RouterConfigError, match='unknown directive "nonsense"'):
        nginx.check(tmp_path, conf)


def test_the_rendered_configuration_routes_versions_and_falls_back_to_the_previous_release(
    tmp_path,
):
    text = nginx.render(routing(release(1), release(2), stable="r0002", previous="r0001"), tmp_path)
    assert '"sales:v1" bg_r0001;' in text and '"r0002" bg_r0002;' in text
    assert "server 127.0.0.1:41001 max_fails=0 backup;" in text
    assert "proxy_read_timeout 1000ms;" in text  # the stable release's time budget
    assert "escape=json" in text
    assert "x-model-version: no live release of sales in staging is that version" in text
    assert "(live: r0001, r0002, sales:v1, sales:v2)" in text


def test_a_stable_release_that_takes_no_traffic_is_refused_naming_it():
    with pytest.raises(ValidationError, match="stable 'r0001' is not a routed release"):
        routing(release(1, routed=False), stable="r0001")


def test_a_deploy_on_a_port_taken_by_another_program_changes_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        target = LocalTarget("staging", STAGING, tmp_path, "sales", port=port)
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is taken"):
            target.deploy("sales_api:v1", "sales:v1")
    assert target.history() == []
    assert target.routing() is None
    assert not (tmp_path / "staging" / "sales" / "router.json").exists()


def test_status_says_down_when_nothing_answers_at_the_stable_address():
    port = free_port()
    state = health.check(f"http://127.0.0.1:{port}", routing(release(1), stable="r0001"), None)
    assert state["verdict"] == "down"
    assert state["why"][0] == f"http://127.0.0.1:{port} ConnectError"
    assert "r0001 not ready (ConnectError)" in state["why"]
    assert "the supervisor is not running" in state["why"][-1]


def test_status_reports_a_recent_crash_even_once_the_process_is_back():
    supervised = {"router": {"last_restart": 100.0, "last_exit": "exited with -9", "restarts": 1}}
    assert health._crashes(supervised, now=105.0) == [
        "router crashed 5s ago (exited with -9) and was restarted (1 restarts)"
    ]
    assert health._crashes(supervised, now=100.0 + health.RECENT_S + 1) == []


def test_a_shadow_that_answers_clients_is_refused():
    with pytest.raises(
        ValidationError, match="shadow 'r0002' must be a running release that takes"
    ):
        routing(release(1), release(2), stable="r0001", shadow="r0002")


def test_the_shadow_report_compares_the_same_requests_and_counts_shadow_errors():
    access = [{"request_id": f"q{i}", "upstream_time": "0.002", "status": 200} for i in range(3)]
    shadow = [
        {"request_id": "q0", "status": 200, "upstream_time": "0.010", "shadow": "r0003"},
        {"request_id": "q1", "status": 504, "upstream_time": "0.300", "shadow": "r0003"},
        {"request_id": "q2", "status": 204, "upstream_time": "-", "shadow": "r0003"},  # unshared
    ]
    predictions = [
        {"request_id": "q0", "model": "sales:a", "outputs": {"predictions": [1.0, 2.0]}},
        {"request_id": "q0", "model": "sales:b", "outputs": {"predictions": [1.5, 2.0]}},
    ]
    r = shadow_report.compare(access, shadow, predictions, "sales:a", "sales:b", "r0003", 9)
    assert (r["requests"], r["shadow_errors"]) == (2, 1)
    assert (r["compared_predictions"], r["differing_predictions"], r["max_abs_diff"]) == (2, 1, 0.5)
    assert r["latency_ms"]["shadow"]["p99"] == pytest.approx(300.0)
    assert "2 predictions compared, 1 differ" in shadow_report.markdown(r)


def test_a_second_shadows_report_counts_only_the_requests_mirrored_to_it():
    access = [{"request_id": f"q{i}", "upstream_time": "0.002", "status": 200} for i in range(6)]
    first = [
        {"request_id": f"q{i}", "status": 200, "upstream_addr": "127.0.0.1:9003", "shadow": "r0003"}
        for i in range(4)
    ]
    second = [
        {"request_id": f"q{i}", "status": 200, "upstream_addr": "127.0.0.1:9004", "shadow": "r0004"}
        for i in range(4, 6)
    ]
    r = shadow_report.compare(access, first + second, [], "sales:a", "sales:c", "r0004", 9004)
    assert r["requests"] == 2


def test_shadow_log_lines_from_before_they_named_the_shadow_are_told_apart_by_its_port():
    access = [{"request_id": f"q{i}", "upstream_time": "0.002", "status": 200} for i in range(3)]
    shadow = [
        {"request_id": "q0", "status": 200, "upstream_addr": "127.0.0.1:9003"},
        {"request_id": "q1", "status": 200, "upstream_addr": "127.0.0.1:9004"},
        {"request_id": "q2", "status": 504, "upstream_addr": "127.0.0.1:9004"},
    ]
    r = shadow_report.compare(access, shadow, [], "sales:a", "sales:c", "r0004", 9004)
    assert (r["requests"], r["shadow_errors"]) == (2, 1)


def test_the_shadow_log_names_the_shadow_release_on_each_line(tmp_path):
    state = routing(release(1), release(2, routed=False), stable="r0001", shadow="r0002")
    conf = nginx.render(state, tmp_path)
    assert '"shadow":"r0002"' in conf


def test_a_sticky_canary_splits_on_the_client_key_and_falls_back_to_the_request_id(tmp_path):
    state = routing(
        release(2),
        release(3),
        stable="r0002",
        canary=CanaryRoute(release="r0003", weight=25, sticky_header="X-Client-Id"),
    )
    conf = nginx.render(state, tmp_path)
    assert 'map $http_x_client_id $bg_canary_key {\n        "" $request_id;' in conf
    assert 'split_clients "$bg_canary_key" $bg_canary_pick {\n        25% "1";' in conf


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"canary": CanaryRoute(release="r0002", weight=10)}, "canary 'r0002' must be"),
        ({"canary": CanaryRoute(release="r0009", weight=10)}, "canary 'r0009' must be"),
        ({"fallback": "r0002"}, "fallback 'r0002': only the stable release, when a previous"),
    ],
    ids=["canary-is-stable", "canary-unknown", "fallback-without-previous"],
)
def test_a_routing_file_with_an_impossible_canary_or_fallback_is_refused(kw, match):
    with pytest.raises(ValidationError, match=match):
        routing(release(2), stable="r0002", **kw)
