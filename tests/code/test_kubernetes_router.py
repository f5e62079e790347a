"""The router on Kubernetes, rendered from the same routing file as the local target: a
Deployment and Service per live release, nginx as its own Deployment with its configuration in a
ConfigMap, a NetworkPolicy letting only the router reach releases; valid against the Kubernetes
schemas offline (no cluster here), and an invalid one reported."""

from __future__ import annotations

from core.settings import ROOT
from deploy import config, kubernetes
from deploy.routing import CanaryRoute, RoutedRelease, Routing

CFG = config.load(ROOT / "deploy" / "config.yaml").env("production", "kubernetes").kubernetes


def release(n: int) -> RoutedRelease:
    return RoutedRelease(
        id=f"r{n:04d}", bento=f"sales_api:v{n}", model_tag=f"sales:v{n}", port=3200 + n, routed=True
    )


ROUTING = Routing(
    environment="production",
    model="sales",
    port=3200,
    releases=[release(1), release(2), release(3)],
    stable="r0002",
    previous="r0001",
    canary=CanaryRoute(release="r0003", weight=25),
    generation=7,
)


def rendered() -> list[dict]:
    images = {r.id: f"{CFG.image_repository}:v{r.id[-1]}" for r in ROUTING.releases}
    return kubernetes.render_routed(CFG, ROUTING, images, environment="production")


def named(manifests: list[dict]) -> dict[str, dict]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def test_every_live_release_gets_a_deployment_and_service_and_the_router_its_own():
    manifests = rendered()
    assert sorted(named(manifests)) == [
        "ConfigMap/sales-api-router",
        "Deployment/sales-api-r0001",
        "Deployment/sales-api-r0002",
        "Deployment/sales-api-r0003",
        "Deployment/sales-api-router",
        "NetworkPolicy/sales-api-releases-from-router-only",
        "Service/sales-api",
        "Service/sales-api-r0001",
        "Service/sales-api-r0002",
        "Service/sales-api-r0003",
    ]
    assert kubernetes.validate(manifests) == []


def test_the_router_configuration_is_the_local_one_with_service_dns_names_as_upstreams():
    conf = named(rendered())["ConfigMap/sales-api-router"]["data"]["nginx.conf"]
    dns = "sales-api-r0002.bentogate.svc.cluster.local:3202"
    assert f"server {dns} max_fails=1 fail_timeout=2s;" in conf
    assert "server sales-api-r0001.bentogate.svc.cluster.local:3201 max_fails=0 backup;" in conf
    assert 'split_clients "$request_id" $bg_canary_pick {\n        25% "1";' in conf
    assert "listen 0.0.0.0:8080" in conf
    assert "127.0.0.1" not in conf


def test_the_stable_name_reaches_the_router_and_only_the_router_reaches_releases():
    objs = named(rendered())
    assert objs["Service/sales-api"]["spec"]["selector"]["bentogate/role"] == "router"
    policy = objs["NetworkPolicy/sales-api-releases-from-router-only"]["spec"]
    assert policy["podSelector"]["matchLabels"]["bentogate/role"] == "release"
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "sales-api",
                            "app.kubernetes.io/part-of": "bentogate",
                            "bentogate/role": "router",
                        }
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": kubernetes.PORT}],
        }
    ]
    release_pods = objs["Deployment/sales-api-r0003"]["spec"]["template"]["metadata"]["labels"]
    assert release_pods["bentogate/role"] == "release"
    router = objs["Deployment/sales-api-router"]["spec"]["template"]
    assert router["metadata"]["annotations"]["bentogate/routing-generation"] == "7"


def test_an_invalid_router_manifest_is_reported_naming_object_and_field():
    manifests = rendered()
    policy = named(manifests)["NetworkPolicy/sales-api-releases-from-router-only"]
    policy["spec"]["ingress"][0]["from"][0]["podSelectors"] = {}
    problems = kubernetes.validate(manifests)
    assert len(problems) == 1
    assert problems[0].startswith(
        "NetworkPolicy/sales-api-releases-from-router-only: spec.ingress.0.from.0"
    )


def test_make_manifests_renders_the_routed_set_with_the_monitor_cronjob_all_valid():
    from deploy.__main__ import _manifests  # what `make manifests` and `make deploy` render

    manifests = _manifests("production", CFG, "sales_api:abc123", "sales:abc123")

    assert sorted(named(manifests)) == [
        "ConfigMap/sales-api-router",
        "CronJob/sales-monitor",
        "Deployment/sales-api-r0001",
        "Deployment/sales-api-router",
        "HorizontalPodAutoscaler/sales-api-r0001",
        "NetworkPolicy/sales-api-releases-from-router-only",
        "PodDisruptionBudget/sales-api-r0001",
        "Service/sales-api",
        "Service/sales-api-r0001",
    ]
    assert kubernetes.validate(manifests) == []


def test_the_stable_release_scales_and_is_protected_as_the_single_deployment_was():
    m = named(
        kubernetes.render_stable(
            CFG,
            environment="production",
            bento_tag="sales_api:abc123",
            model_tag="sales:abc123",
            image="img:abc123",
        )
    )
    release = m["Deployment/sales-api-r0001"]
    pods = release["spec"]["template"]["metadata"]["labels"]

    assert m["HorizontalPodAutoscaler/sales-api-r0001"]["spec"]["scaleTargetRef"]["name"] == (
        kubernetes.stable_deployment("sales")
    )
    assert m["PodDisruptionBudget/sales-api-r0001"]["spec"]["selector"]["matchLabels"].items() <= (
        pods.items()
    )
    assert pods["bentogate/role"] == "release"  # the NetworkPolicy lets only the router in
    assert (
        "sales-api-r0001.bentogate.svc.cluster.local:3000"
        in (m["ConfigMap/sales-api-router"]["data"]["nginx.conf"])
    )
