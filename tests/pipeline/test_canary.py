"""Canary releases and the sustained budget miss for real: nginx, the supervisor and Bentos of
the default model and of a slow-on-purpose variant, on free loopback ports, with clients polling
the stable address throughout. Slack cannot run here: notifications go to a list (the CLI posts
them to Slack's webhook, tested in tests/code/test_notify_and_smoke.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from core.process import free_port
from core.settings import ROOT
from deploy import accuracy, config
from deploy.canary import AccuracyChecks
from deploy.local import DeployError, LocalTarget
from models import runtimes
from tests.conftest import copy_project, make
from tests.fixtures import polling as keepalive
from tests.fixtures.variants import Slow, register_like, trusting_config

pytestmark = pytest.mark.slow

BUDGET_MS = 400
SLOW_S = 0.5  # the slow variant: over the budget and over the canary's P90 bound
CANARY = {
    "steps": [25, 50, 100],
    "interval_s": 2.0,
    "min_requests": 8,
    "max_failed_checks": 2,
    "max_holds": 2,
    # Loose enough that a busy test machine never fails the good canary (the checks' own
    # thresholds are tested in tests/code/test_canary.py); the slow canary still fails them all:
    # every one of its requests runs past the budget, and a late request counts as an error.
    "checks": {"error_rate_max": 0.2, "p90_ratio_max": 100, "p90_max_ms": 2000},
}
SUSTAINED = {"max_share": 0.5, "window_s": 4, "min_requests": 10, "every_s": 0.5}


@pytest.fixture(scope="module")
def trusting(tmp_path_factory) -> Iterator[None]:
    """Releases trust the slow variant's wrapper type (the sales config never does)."""
    path = trusting_config(tmp_path_factory.mktemp("trust") / "trusting.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOGATE_CONFIG", str(path))
        yield


@pytest.fixture(scope="module")
def bentos(production_tag, tmp_path_factory, trusting) -> dict[str, tuple[str, str]]:
    """name -> (Bento tag, model tag): the default model, and the same model SLOW_S slower."""
    repo = copy_project(tmp_path_factory.mktemp("canary") / "repo")
    # This copy's Bentos also ship the variant's module (the project's never ship tests/).
    spec = (repo / "bentofile.yaml").read_text()
    spec = spec.replace('  - "tests/"\n', "").replace(
        "include:\n",
        'include:\n  - "tests/__init__.py"\n  - "tests/fixtures/__init__.py"\n'
        '  - "tests/fixtures/variants.py"\n',
    )
    (repo / "bentofile.yaml").write_text(spec)
    slow_tag = register_like(
        production_tag, Slow(runtimes.load_registered(production_tag), SLOW_S), git_commit="test"
    )
    out = {}
    for name, tag in (("good", production_tag), ("slow", slow_tag)):
        result = make(repo, "build", f"MODEL_TAG={tag}", env={})
        assert result.returncode == 0, result.stderr
        out[name] = ((repo / "build" / "bento-tag").read_text().strip(), tag)
    return out


@pytest.fixture(scope="module")
def target(bentos, tmp_path_factory):
    """r0001: the default model, stable; notifications in target.notes."""
    staging = config.load(ROOT / "deploy" / "config.yaml").environments["staging"]
    env = config.Environment.model_validate(
        {
            **staging.model_dump(),
            "canary": CANARY,
            "local": {
                **staging.local.model_dump(),  # type: ignore[union-attr]
                "drain_s": 0.2,
                "router": {"budget_ms": BUDGET_MS, "sustained_miss": SUSTAINED},
            },
        }
    )
    deploy_dir = tmp_path_factory.mktemp("deploy")
    t = LocalTarget("staging", env, deploy_dir, "sales", port=free_port(), log=lambda _: None)
    t.notes = []  # type: ignore[attr-defined]
    t.notify = t.notes.append  # type: ignore[attr-defined]
    try:
        t.deploy(*bentos["good"])
        yield t
    finally:
        t.down()


@pytest.fixture(scope="module")
def example(target) -> dict:
    return keepalive.predict_example(target.url)


@contextmanager
def polling(url: str, example: dict, clients: int = 4, max_s: float = 120) -> Iterator[Counter]:
    """Clients posting to the stable address every 20 ms until the block ends (or max_s): a
    Counter of (status, answered by); a transport error counts as (0, the error)."""
    seen: Counter = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def poll() -> None:
        deadline = time.monotonic() + max_s
        with httpx.Client(timeout=10) as client:
            for _ in range(100_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r, resent = keepalive.post(client, f"{url}/predict", json=example)
                    key = (r.status_code, r.headers.get("x-bentogate-release", ""))
                    if resent:
                        with lock:
                            seen[("resent", "closed idle connection")] += 1
                except httpx.HTTPError as exc:
                    key = (0, repr(exc))
                with lock:
                    seen[key] += 1
                time.sleep(0.02)  # a client polling, as in tests/pipeline/test_router.py

    threads = [threading.Thread(target=poll) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield seen
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)


def failures(seen: Counter) -> int:
    return sum(n for (status, _), n in seen.items() if status not in (200, "resent"))


def actions(report) -> list[str]:
    return [s["action"] for s in json.loads(report.with_suffix(".json").read_text())["steps"]]


def test_a_canary_that_meets_its_checks_is_promoted_step_by_step(target, bentos, example, tmp_path):
    report = tmp_path / "canary.md"
    with polling(target.url, example) as seen:
        release = target.canary(*bentos["good"], report=report)
    routing = target.routing()
    assert (release.id, routing.stable, routing.previous, routing.canary) == (
        "r0002",
        "r0002",
        "r0001",
        None,
    )
    assert failures(seen) == 0, seen
    assert seen[(200, "r0002")] > 0 and seen[(200, "r0001")] > 0
    steps = [a for a in actions(report) if not a.startswith("hold")]
    assert steps == ["advance", "advance", "promote"]
    assert report.read_text().startswith("### Canary r0002 vs stable r0001: promoted")


def test_a_slow_canary_is_rolled_back_automatically_and_stable_never_stops(
    target, bentos, example, tmp_path
):
    report = tmp_path / "canary.md"
    rolled_back = pytest.raises(DeployError, match=r"canary r0003 .* failed its checks 2")
    with polling(target.url, example) as seen, rolled_back:
        target.canary(*bentos["slow"], report=report)
    routing = target.routing()
    assert (routing.stable, routing.previous, routing.canary) == ("r0002", "r0001", None)
    assert "r0003" not in [r.id for r in routing.releases]
    assert failures(seen) == 0, seen
    assert actions(report)[-1] == "roll back"
    assert "failed check (1/2)" in actions(report)
    assert target.notes[-1].startswith("staging/sales: canary r0003")
    assert target.history()[-1].status == "failed"


def test_a_canary_without_traffic_is_held_then_rolled_back_never_promoted(target, bentos, tmp_path):
    report = tmp_path / "canary.md"
    with pytest.raises(DeployError, match=r"inconclusive 3 times in a row at 25%"):
        target.canary(*bentos["good"], report=report)
    assert actions(report) == ["hold (1/2)", "hold (2/2)", "roll back"]
    assert target.routing().stable == "r0002"
    assert "too few requests (r0004 0 < 8" in report.read_text()


def test_a_release_that_keeps_missing_its_budget_loses_its_traffic_to_the_previous_one(
    target, bentos, example
):
    slow = target.deploy(*bentos["slow"])  # r0005, stable; r0002 previous
    with polling(target.url, example, max_s=30) as seen:
        deadline = time.monotonic() + 20
        while target.routing().fallback is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.routing().fallback == slow.id
        time.sleep(1.0)  # the router reloaded: the previous release alone answers now
        before = dict(seen)
        time.sleep(1.0)
    assert failures(seen) == 0, seen
    after = {k: n - before.get(k, 0) for k, n in seen.items()}
    assert after.get((200, "r0002"), 0) > 0 and after.get((200, slow.id), 0) == 0
    events = [json.loads(x) for x in (target.dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "fallback" and events[-1]["release"] == slow.id
    assert "answered by the previous release r0002" in events[-1]["text"]
    status = target.status()
    assert status["verdict"] == "degraded"
    assert any("pinned to the previous release r0002" in w for w in status["why"])
    assert os.environ.get("BENTOGATE_CONFIG")  # the variant ran trusted, as configured


def test_an_operator_unpins_the_release_and_it_answers_its_own_traffic_again(target):
    pinned = target.routing().fallback
    assert pinned is not None
    assert target.unpin() == pinned
    assert target.routing().fallback is None
    r = httpx.get(f"{target.url}/readyz")
    assert r.headers["x-bentogate-release"] == pinned


def test_a_rollback_restores_the_previous_release_without_a_restart_and_stops_the_bad_one(target):
    before = target.routing()
    pids = json.loads((target.dir / "supervisor.json").read_text())["releases"]
    restored = target.rollback()
    after = target.routing()
    assert restored.id == before.previous
    # The release rolled back is never the fallback: a crash of the restored one must not send
    # its traffic back to the model it left.
    assert (after.stable, after.previous) == (before.previous, None)
    assert [r.id for r in after.releases] == [restored.id]
    now = json.loads((target.dir / "supervisor.json").read_text())["releases"]
    # The restored one was not restarted; the bad one stopped.
    assert {rid: i["pid"] for rid, i in now.items()} == {restored.id: pids[restored.id]["pid"]}
    assert httpx.get(f"{target.url}/readyz").headers["x-bentogate-release"] == restored.id


@contextmanager
def reporting_actuals(url: str, example: dict, bad: str, max_s: float = 120) -> Iterator[Counter]:
    """Two clients predicting through the stable address and posting each answer's actual to
    /feedback at once: the answer itself for any release but `bad`, ten times it plus 10 for
    `bad`'s (its predictions look bad against what happened). A Counter of (status, answered by)."""
    seen: Counter = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def poll(n: int) -> None:
        deadline = time.monotonic() + max_s
        with httpx.Client(timeout=10) as client:
            for i in range(100_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                rid = f"acc-{n}-{i}"
                try:
                    r, resent = keepalive.post(
                        client, f"{url}/predict", json=example, headers={"x-request-id": rid}
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        seen[(0, repr(exc))] += 1
                    continue
                if resent:
                    with lock:
                        seen[("resent", "closed idle connection")] += 1
                release = r.headers.get("x-bentogate-release", "")
                with lock:
                    seen[(r.status_code, release)] += 1
                if r.status_code != 200:
                    continue
                preds = r.json()["predictions"]
                keys = [rid] if len(preds) == 1 else [f"{rid}#{k}" for k in range(len(preds))]
                actuals = [
                    {"request_id": key, "actual": p * 10 + 10 if release == bad else p}
                    for key, p in zip(keys, preds, strict=True)
                ]
                try:  # through the router too: it reloads as the canary moves
                    keepalive.post(client, f"{url}/feedback", json={"actuals": actuals})
                except httpx.HTTPError as exc:
                    with lock:
                        seen[(0, f"feedback: {exc!r}")] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=poll, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    try:
        yield seen
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)


def test_a_canary_whose_predictions_are_bad_against_posted_actuals_is_rolled_back_on_accuracy(
    target, bentos, example, tmp_path
):
    report = tmp_path / "canary.md"
    stable = target.routing().stable
    cfg = target.canary_cfg
    checks = cfg.checks.model_copy(update={"accuracy": AccuracyChecks(min_joined=5)})
    target.canary_cfg = cfg.model_copy(update={"checks": checks})
    canary_id = f"r{len(target.history()) + 1:04d}"
    check = accuracy.for_model(target.dir, bentos["good"][1], checks.accuracy)
    rolled_back = pytest.raises(DeployError, match=rf"canary {canary_id} .* failed its checks 2")
    try:
        with reporting_actuals(target.url, example, bad=canary_id) as seen, rolled_back:
            target.canary(*bentos["good"], report=report, extra_checks=(check,))
    finally:
        target.canary_cfg = cfg
    assert failures(seen) == 0, seen
    assert seen[(200, canary_id)] > 0
    assert target.routing().stable == stable
    assert actions(report)[-1] == "roll back"
    failed = json.loads(report.with_suffix(".json").read_text())["steps"][-1]["checks"]
    verdicts = {c["name"]: c["verdict"] for c in failed}
    assert verdicts["accuracy"] == "fail" and verdicts["error_rate"] == "pass", failed
