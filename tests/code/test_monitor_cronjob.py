"""The scheduled monitor on Kubernetes: a CronJob valid against the Kubernetes schemas, one run at
a time, never retried on a finding, reading the logs of its environment and model; and a broken
one is caught by the same offline validation. No cluster here."""

from __future__ import annotations

from core.settings import ROOT
from deploy import config, kubernetes

CFG = config.load(ROOT / "deploy" / "config.yaml").env("production", "kubernetes").kubernetes


def cronjob() -> dict:
    assert CFG is not None
    return kubernetes.monitor_cronjob(
        CFG, environment="production", model="sales", image="ghcr.io/o/bentogate-monitor:abc"
    )


def test_the_monitor_cronjob_is_a_valid_kubernetes_object():
    assert kubernetes.validate([cronjob()]) == []


def test_the_monitor_runs_one_at_a_time_and_a_finding_is_not_retried():
    job = cronjob()
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "monitoring", "run"]
    assert container["args"] == [
        "production", "--model", "sales", "--logs", "/var/lib/bentogate/logs/production/sales"
    ]  # fmt: skip
    assert {"name": "DO_NOT_TRACK", "value": "1"} in container["env"]


def test_a_broken_cronjob_is_caught_by_the_offline_validation():
    job = cronjob()
    job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = 7
    del job["spec"]["schedule"]
    problems = kubernetes.validate([job])
    assert problems
    assert all(p.startswith("CronJob/sales-monitor:") for p in problems)
