"""The kubernetes target: the manifests that ship (render_stable: `make manifests`, `make deploy`)
valid against the Kubernetes schemas, probes and rollout safety in place, and a failed rollout
undone. No cluster here: kubectl is a stand-in that records calls."""

from __future__ import annotations

import subprocess

import pytest

from core.settings import ROOT
from deploy import config, kubernetes

CFG = config.load(ROOT / "deploy" / "config.yaml").env("production", "kubernetes").kubernetes
RELEASE = kubernetes.stable_deployment("sales")  # what rolls out and back


def rendered(model_tag: str = "sales:abc123") -> list[dict]:
    return kubernetes.render_stable(
        CFG,
        environment="production",
        bento_tag="sales_api:xyz789",
        model_tag=model_tag,
        image=kubernetes.image_of("sales_api:xyz789", CFG.image_repository),
    )


def release_objects(manifests: list[dict]) -> dict[str, dict]:
    """The stable release's Deployment, Service, autoscaler and budget, by kind: the objects named
    after the release (the router's Deployment and Service are not)."""
    suffix = f"-{kubernetes.STABLE_RELEASE}"
    return {m["kind"]: m for m in manifests if m["metadata"]["name"].endswith(suffix)}


def selectors(manifests: list[dict]) -> list[dict[str, str]]:
    """The labels each object picks pods by: Services, Deployments, the budget, the policy."""
    found = []
    for m in manifests:
        if m["kind"] == "Service":
            found.append(m["spec"]["selector"])
        elif m["kind"] in ("Deployment", "PodDisruptionBudget"):
            found.append(m["spec"]["selector"]["matchLabels"])
        elif m["kind"] == "NetworkPolicy":
            found.append(m["spec"]["podSelector"]["matchLabels"])
    return found


def pod_labels(manifests: list[dict]) -> list[dict[str, str]]:
    return [
        m["spec"]["template"]["metadata"]["labels"] for m in manifests if m["kind"] == "Deployment"
    ]


def test_rendered_manifests_are_valid_kubernetes_objects():
    manifests = rendered()
    assert [m["kind"] for m in manifests] == [
        "Deployment",
        "Service",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert kubernetes.validate(manifests) == []


def test_validation_reports_a_field_kubernetes_does_not_know():
    manifests = rendered()
    dep = release_objects(manifests)["Deployment"]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/readyz"
    problems = kubernetes.validate(manifests)
    assert len(problems) == 1
    assert problems[0].startswith(
        "Deployment/sales-api-r0001: spec.template.spec.containers.0.readinessProbe"
    )


def test_deployment_probes_the_service_health_endpoints_and_never_drops_capacity():
    dep = release_objects(rendered())["Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["replicas"] == CFG.replicas
    assert container["image"] == f"{CFG.image_repository}:xyz789"
    assert container["resources"]["requests"] == {"cpu": CFG.cpu, "memory": CFG.memory}


def test_autoscaler_and_disruption_budget_follow_the_config():
    kinds = release_objects(rendered())
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == CFG.replicas
    assert kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == CFG.max_replicas
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == CFG.min_available


def test_a_model_name_with_underscores_becomes_a_valid_object_name():
    manifests = rendered("wine_quality:abc")
    names = {m["metadata"]["name"] for m in manifests}
    assert {"wine-quality-api", "wine-quality-api-r0001"} <= names
    assert kubernetes.validate(manifests) == []


class StandInKubectl:
    """Records kubectl calls; `rollout status` fails when told to."""

    def __init__(self, rollout_ok: bool) -> None:
        self.rollout_ok, self.calls = rollout_ok, []

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(args[:2])
        ok = self.rollout_ok or args[:2] != ["rollout", "status"]
        return subprocess.CompletedProcess(args, 0 if ok else 1, "", "" if ok else "timed out")


def test_failed_rollout_is_undone_with_a_stand_in_kubectl():
    kubectl = StandInKubectl(rollout_ok=False)
    with pytest.raises(
        kubernetes.RolloutError, match="rollout did not complete: timed out; rolled back"
    ):
        kubernetes.apply(kubernetes.to_yaml(rendered()), CFG, RELEASE, "sales:abc123", run=kubectl)
    assert kubectl.calls == [["apply", "-f"], ["rollout", "status"], ["rollout", "undo"]]


def test_successful_rollout_is_not_undone_with_a_stand_in_kubectl():
    kubectl = StandInKubectl(rollout_ok=True)
    kubernetes.apply(
        kubernetes.to_yaml(rendered()),
        CFG,
        RELEASE,
        "sales:abc123",
        run=kubectl,
        log=lambda _: None,
    )
    assert ["rollout", "undo"] not in kubectl.calls


def test_two_models_in_one_namespace_never_share_an_object_or_select_each_others_pods():
    sales, wine = rendered("sales:abc123"), rendered("wine_quality:def456")
    assert {(m["kind"], m["metadata"]["name"]) for m in sales}.isdisjoint(
        (m["kind"], m["metadata"]["name"]) for m in wine
    )
    for mine, other in ((sales, wine), (wine, sales)):
        assert not any(
            selector.items() <= pods.items()
            for selector in selectors(mine)
            for pods in pod_labels(other)
        )
