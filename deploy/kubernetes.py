"""The `kubernetes` deploy target: manifests rendered from config, applied with kubectl.

`render_stable` (what ships) and `render_routed` are pure and tested offline against the
Kubernetes JSON schemas (kubernetes-validate).
`apply` is a thin shell: kubectl apply, wait for the rollout, `kubectl rollout undo` when the
rollout or the smoke test fails. The image comes from `bentoml containerize` (make image), which
needs a Docker daemon: not available on every machine, so it stays outside this module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from deploy import smoke
from deploy.config import KubernetesConfig
from deploy.routing import RoutedRelease, Routing

PORT = 3000  # `bentoml serve` in the image listens here
KUBERNETES_VERSION = "1.31.0"  # schemas the manifests are validated against in tests


class RolloutError(RuntimeError):
    pass


def app_name(model: str) -> str:
    """A DNS-1123 name for the model's API: `wine_quality` -> `wine-quality-api`."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    return f"{name}-api"[:63]


def image_of(bento_tag: str, repository: str) -> str:
    """`bentoml containerize` tags the image with the Bento's version."""
    return f"{repository}:{bento_tag.split(':', 1)[1]}"


def _app_labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "bentogate"}


def _release_labels(app: str, release_id: str) -> dict[str, str]:
    """A release's pods: what its Service, budget and the router's NetworkPolicy select."""
    return {**_app_labels(app), "bentogate/role": "release", "bentogate/release": release_id}


def _release_deployment(
    cfg: KubernetesConfig,
    release: RoutedRelease,
    *,
    name: str,
    labels: dict[str, str],
    environment: str,
    image: str,
) -> dict[str, Any]:
    """One release's Bento, serving behind the router."""
    annotations = {"bentogate/bento": release.bento, "bentogate/model": release.model_tag}
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": {**labels, "bentogate/environment": environment},
            "annotations": annotations,
        },
        "spec": {
            "replicas": cfg.replicas,
            "revisionHistoryLimit": 10,  # what `kubectl rollout undo` goes back to
            "selector": {"matchLabels": labels},
            # Surge, never drop below the wanted count: new pods take traffic once /readyz passes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                # A copy: yaml.safe_dump writes a dict met twice as an anchor and an alias.
                "metadata": {"labels": labels, "annotations": {**annotations}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "api",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "env": [
                                {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
                                {"name": "OMP_NUM_THREADS", "value": "1"},
                                {"name": "BENTOGATE_RELEASE", "value": release.id},
                            ],
                            "resources": {
                                "requests": {"cpu": cfg.cpu, "memory": cfg.memory},
                                "limits": {"memory": cfg.memory},
                            },
                            # Cold start loads bentoml, pandas and the model: give it a minute.
                            "startupProbe": {**probe, "failureThreshold": 24},
                            "readinessProbe": {**probe, "failureThreshold": 2},
                            "livenessProbe": {
                                "httpGet": {"path": "/livez", "port": "http"},
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _autoscaler(cfg: KubernetesConfig, meta: dict[str, Any], target: str) -> dict[str, Any]:
    """Scales the Deployment `target` on CPU, between the config's replicas and max_replicas."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": cfg.replicas,
            "maxReplicas": cfg.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": cfg.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def _disruption_budget(
    cfg: KubernetesConfig, meta: dict[str, Any], selector: dict[str, Any]
) -> dict[str, Any]:
    """Keeps min_available of the selected pods up while nodes are drained."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"minAvailable": cfg.min_available, "selector": selector},
    }


MONITOR_SCHEDULE = "17 * * * *"  # hourly, off the hour
MONITOR_VOLUME = (
    "bentogate-monitor"  # PVC: the prediction logs and actuals, and the monitor's store
)


def monitor_cronjob(
    cfg: KubernetesConfig,
    *,
    environment: str,
    model: str,
    image: str,
    schedule: str = MONITOR_SCHEDULE,
) -> dict[str, Any]:
    """`make monitor` on a schedule (monitoring/): reads the logs the model's pods write to the
    shared volume, keeps its store there, notifies Slack (secret `bentogate-slack`, key `url`,
    optional) and may roll the Deployment back. `image` is this repository's image (the Bento's
    image carries no monitoring code); the job needs a service account allowed to roll back."""
    name = f"{app_name(model)[: -len('-api')]}-monitor"
    root = "/var/lib/bentogate"
    logs = f"{root}/logs/{environment}/{model}"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": "bentogate",
                "bentogate/environment": environment,
            },
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",  # one run at a time: the store has one writer
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,  # exit 1 is a finding, not a crash to retry
                    "activeDeadlineSeconds": 900,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": "monitor",
                                    "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["python", "-m", "monitoring", "run"],
                                    "args": [environment, "--model", model, "--logs", logs],
                                    "env": [
                                        {"name": "DO_NOT_TRACK", "value": "1"},
                                        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
                                        {
                                            "name": "BENTOGATE_MONITOR_DIR",
                                            "value": f"{root}/monitor",
                                        },
                                        {
                                            "name": "BENTOGATE_REPORTS_DIR",
                                            "value": f"{root}/reports",
                                        },
                                        {
                                            "name": "SLACK_WEBHOOK_URL",
                                            "valueFrom": {
                                                "secretKeyRef": {
                                                    "name": "bentogate-slack",
                                                    "key": "url",
                                                    "optional": True,
                                                }
                                            },
                                        },
                                    ],
                                    "resources": {
                                        "requests": {"cpu": "1", "memory": "1Gi"},
                                        "limits": {"memory": "2Gi"},
                                    },
                                    "volumeMounts": [{"name": "state", "mountPath": root}],
                                    "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "state",
                                    "persistentVolumeClaim": {"claimName": MONITOR_VOLUME},
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


ROUTER_IMAGE = "nginx:1.27.5-alpine"  # the router: the same nginx.conf as the local target
ROUTER_PORT = 8080
ROUTER_PREFIX = "/tmp/bentogate"  # an emptyDir: nginx's pid, temp files and logs
ROUTER_CONF_DIR = "/etc/bentogate"


def _release_name(app: str, rid: str) -> str:
    return f"{app}-{rid}"[:63]


def render_routed(
    cfg: KubernetesConfig,
    routing: Routing,
    images: dict[str, str],
    *,
    environment: str,
) -> list[dict[str, Any]]:
    """The routing file (routing.py) on Kubernetes: a Deployment and a Service per live release
    (each Service on the release's port in the routing file, so the router's access log says
    which release answered), the router (nginx) as its own Deployment with nginx.conf from
    nginx.py in a ConfigMap, upstreams at the Services' DNS names, a Service at the model's
    stable name in front of the router, and a NetworkPolicy that lets only the router reach the
    releases. `images`: release id -> image. Pure."""
    from pathlib import Path

    from deploy import nginx

    app = app_name(routing.model)
    base = _app_labels(app)
    env_label = {"bentogate/environment": environment}
    live = [r for r in routing.releases if r.routed or r.id == routing.shadow]
    out: list[dict[str, Any]] = []
    addresses = {}
    for r in live:
        name, labels = _release_name(app, r.id), _release_labels(app, r.id)
        addresses[r.id] = f"{name}.{cfg.namespace}.svc.cluster.local:{r.port}"
        deployment = _release_deployment(
            cfg, r, name=name, labels=labels, environment=environment, image=images[r.id]
        )
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": r.port, "targetPort": "http"}],
            },
        }
        out += [deployment, service]
    router_labels = {**base, "bentogate/role": "router"}
    conf = nginx.render(
        routing,
        Path(ROUTER_PREFIX),
        addresses=addresses,
        listen=f"0.0.0.0:{ROUTER_PORT}",
    )
    router = f"{app}-router"
    meta = {"namespace": cfg.namespace, "labels": {**router_labels, **env_label}}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": router, **meta},
        "data": {"nginx.conf": conf, "generation": str(routing.generation)},
    }
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
    router_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": router, **meta},
        "spec": {
            "replicas": cfg.replicas,
            "selector": {"matchLabels": router_labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    # A new configuration rolls the router (nginx reads it at start).
                    "labels": router_labels,
                    "annotations": {"bentogate/routing-generation": str(routing.generation)},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 101,  # the image's nginx user
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "router",
                            "image": ROUTER_IMAGE,
                            "command": ["/bin/sh", "-c"],
                            "args": [
                                f"mkdir -p {ROUTER_PREFIX}/logs && exec nginx -p {ROUTER_PREFIX}"
                                f" -c {ROUTER_CONF_DIR}/nginx.conf -e /dev/stderr"
                            ],
                            "ports": [{"name": "http", "containerPort": ROUTER_PORT}],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "periodSeconds": 10},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "conf", "mountPath": ROUTER_CONF_DIR, "readOnly": True},
                                {"name": "run", "mountPath": ROUTER_PREFIX},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "conf", "configMap": {"name": router}},
                        {"name": "run", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    stable_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, **meta},
        "spec": {
            "selector": router_labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{app}-releases-from-router-only", **meta},
        "spec": {
            "podSelector": {"matchLabels": {**base, "bentogate/role": "release"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": router_labels}}],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
        },
    }
    return [*out, configmap, router_deployment, stable_service, policy]


STABLE_RELEASE = "r0001"  # `make manifests`: one release, stable, behind the router


def stable_deployment(model: str) -> str:
    """The Deployment of the stable release render_stable renders: what rolls out and back."""
    return _release_name(app_name(model), STABLE_RELEASE)


def render_stable(
    cfg: KubernetesConfig, *, environment: str, bento_tag: str, model_tag: str, image: str
) -> list[dict[str, Any]]:
    """What `make manifests` and `make deploy` on the kubernetes target apply: the routed set
    (render_routed) with one release, stable, at the router's stable name, and that release's
    autoscaler and disruption budget. The release keeps its name from Bento to Bento (a new
    Bento rolls its Deployment; `kubectl rollout undo` goes back), so the router's configuration
    only changes with the config. Pure."""
    model = model_tag.split(":")[0]
    routing = Routing(
        environment=environment,
        model=model,
        port=ROUTER_PORT,
        releases=[
            RoutedRelease(
                id=STABLE_RELEASE, bento=bento_tag, model_tag=model_tag, port=PORT, routed=True
            )
        ],
        stable=STABLE_RELEASE,
    )
    app = app_name(model)
    deployment = stable_deployment(model)
    meta = {
        "name": deployment,
        "namespace": cfg.namespace,
        "labels": {**_app_labels(app), "bentogate/environment": environment},
    }
    return [
        *render_routed(cfg, routing, {STABLE_RELEASE: image}, environment=environment),
        _autoscaler(cfg, meta, deployment),
        _disruption_budget(cfg, meta, {"matchLabels": _release_labels(app, STABLE_RELEASE)}),
    ]


def to_yaml(manifests: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)


def validate(manifests: Sequence[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems found by the Kubernetes JSON schemas (strict: unknown fields count)."""
    import kubernetes_validate  # dev dependency: validation runs in tests and `make manifests`

    problems = []
    for m in manifests:
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{m['kind']}/{m['metadata']['name']}: {path}: {exc.message}")
    return problems


Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _kubectl(args: list[str]) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RolloutError("kubectl is not on PATH")
    return subprocess.run([kubectl, *args], capture_output=True, text=True, timeout=3600)


def apply(
    manifests_yaml: str,
    cfg: KubernetesConfig,
    name: str,
    model_tag: str,
    run: Run = _kubectl,
    log: Callable[[str], None] = print,
) -> None:
    """Apply, wait for the rollout, smoke-test; on any failure undo the rollout and raise."""
    from tempfile import NamedTemporaryFile

    with NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(manifests_yaml)
        fh.flush()
        applied = run(["apply", "-f", fh.name])
    if applied.returncode != 0:
        raise RolloutError(f"kubectl apply failed: {applied.stderr.strip()}")
    ns = ["-n", cfg.namespace]
    status = run(
        ["rollout", "status", f"deployment/{name}", *ns, f"--timeout={cfg.rollout_timeout_s}s"]
    )
    reason = None
    if status.returncode != 0:
        reason = f"rollout did not complete: {status.stderr.strip() or status.stdout.strip()}"
    elif cfg.url:
        checks = smoke.smoke(cfg.url, model_tag)
        if not smoke.passed(checks):
            reason = f"smoke test through {cfg.url}: {smoke.describe(checks)}"
    if reason:
        undo = run(["rollout", "undo", f"deployment/{name}", *ns])
        undone = "rolled back" if undo.returncode == 0 else f"undo FAILED: {undo.stderr.strip()}"
        raise RolloutError(f"{reason}; {undone}")
    log(f"deployment/{name} rolled out in namespace {cfg.namespace}")


def undo(cfg: KubernetesConfig, name: str, run: Run = _kubectl) -> None:
    """Back to the Deployment's previous revision (`make rollback` on the kubernetes target)."""
    undo = run(["rollout", "undo", f"deployment/{name}", "-n", cfg.namespace])
    if undo.returncode != 0:
        raise RolloutError(f"kubectl rollout undo failed: {undo.stderr.strip()}")
    status = run(
        [
            "rollout",
            "status",
            f"deployment/{name}",
            "-n",
            cfg.namespace,
            f"--timeout={cfg.rollout_timeout_s}s",
        ]
    )
    if status.returncode != 0:
        raise RolloutError(f"rollback did not complete: {status.stderr.strip()}")
