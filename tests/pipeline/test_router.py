"""The local target's router for real: nginx and two releases of a built Bento under the
supervisor, on free loopback ports. Requests routed by x-model-version, an unknown version
refused, a 200 MB body refused without the router growing, a late stable release answered for by
the previous one, and the router and a release SIGKILLed and brought back while `status`
reports the outage, a supervisor SIGKILLed and its router and releases adopted by the next one
(`make adopt`, or a deploy) with no failed request, and a broken routing file that stops nothing
until `make down` stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.process import free_port
from core.settings import ROOT
from deploy import config
from deploy.local import LocalTarget, UsageError
from tests.conftest import copy_project, make
from tests.fixtures import polling

pytestmark = pytest.mark.slow

BUDGET_MS = 300


@pytest.fixture(scope="module")
def bento(production_tag, tmp_path_factory) -> str:
    repo = copy_project(tmp_path_factory.mktemp("router") / "repo")
    result = make(repo, "build", env={})
    assert result.returncode == 0, result.stderr
    return (repo / "build" / "bento-tag").read_text().strip()


@pytest.fixture(scope="module")
def target(bento, production_tag, tmp_path_factory):
    """Two deploys of the Bento: r0002 stable, r0001 previous."""
    staging = config.load(ROOT / "deploy" / "config.yaml").environments["staging"]
    env = config.Environment.model_validate(
        {
            **staging.model_dump(),
            "local": {
                **staging.local.model_dump(),  # type: ignore[union-attr]
                "drain_s": 0.2,
                "router": {"budget_ms": BUDGET_MS},
            },
        }
    )
    deploy_dir = tmp_path_factory.mktemp("deploy")
    t = LocalTarget("staging", env, deploy_dir, "sales", port=free_port(), log=lambda _: None)
    try:
        for _ in range(2):
            t.deploy(bento, production_tag)
        yield t
    finally:
        t.down()


@pytest.fixture(scope="module")
def example(target) -> dict:
    return polling.predict_example(target.url)


def supervised(target: LocalTarget) -> dict:
    return json.loads((target.dir / "supervisor.json").read_text())


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def access_log(target: LocalTarget) -> list[dict]:
    lines = (target.dir / "nginx" / "logs" / "access.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def access_line(target: LocalTarget, request_id: str) -> dict:
    """The access log's line for `request_id`. nginx writes it after the answer has gone."""
    deadline = time.monotonic() + 10
    while True:
        lines = [x for x in access_log(target) if x["request_id"] == request_id]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, f"{len(lines)} access log lines for {request_id!r}"
            return lines[0]
        time.sleep(0.05)


def test_a_request_without_a_version_is_answered_by_the_stable_release_and_says_so(
    target, example, production_tag
):
    r = httpx.post(f"{target.url}/predict", json=example)
    assert r.status_code == 200
    assert r.headers["x-bentogate-routed-to"] == "r0002"
    assert r.headers["x-bentogate-release"] == "r0002"
    assert r.headers["x-model-tag"] == production_tag


def test_feedback_at_the_stable_address_is_written_by_the_stable_release(target):
    r = httpx.post(
        f"{target.url}/feedback",
        json={"actuals": [{"request_id": "fb-1", "actual": 4.5}]},
        timeout=10,
    )
    assert r.status_code == 202
    assert r.json() == {"accepted": 1}
    assert r.headers["x-bentogate-release"] == "r0002"
    lines = (target.dir / "actuals.jsonl").read_text().splitlines()
    written = json.loads(lines[-1])
    assert (written["request_id"], written["actual"], written["release"]) == ("fb-1", 4.5, "r0002")


def test_a_request_naming_a_version_goes_to_that_release(target, example, production_tag):
    by_id = httpx.post(f"{target.url}/predict", json=example, headers={"x-model-version": "r0001"})
    by_tag = httpx.post(
        f"{target.url}/predict", json=example, headers={"x-model-version": production_tag}
    )
    assert by_id.status_code == 200 and by_tag.status_code == 200
    assert by_id.headers["x-bentogate-release"] == "r0001"
    # Both releases serve the same model tag: the tag names the newer release.
    assert by_tag.headers["x-bentogate-release"] == "r0002"


def test_an_unknown_version_gets_404_naming_the_live_versions(target, example, production_tag):
    r = httpx.post(f"{target.url}/predict", json=example, headers={"x-model-version": "r9999"})
    assert r.status_code == 404
    assert r.json()["error"] == (
        "x-model-version: no live release of sales in staging is that version"
        f" (live: r0001, r0002, {production_tag})"
    )
    assert r.json()["errors"][0]["field"] is None


def test_the_access_log_has_one_json_line_per_request_that_no_header_can_forge(target, example):
    forged = 'x", "answered_by": "forged\\'
    r = httpx.post(
        f"{target.url}/predict",
        json=example,
        headers={"x-request-id": forged, "x-forwarded-for": "203.0.113.7"},
    )
    assert r.status_code == 200
    last = access_line(target, forged)
    assert (last["routed_to"], last["answered_by"], last["status"]) == ("r0002", "r0002", 200)
    assert last["forwarded_for"] == "203.0.113.7, 127.0.0.1"
    assert float(last["upstream_time"]) >= 0


def test_a_200_mb_body_is_refused_without_the_router_growing(target):
    nginx_pid = supervised(target)["router"]["pid"]
    before = rss_kb([nginx_pid, *children(nginx_pid)])
    size = 200 << 20
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        chunk, sent = b"0" * (1 << 20), 0
        try:
            while sent < size:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the router closed the connection: it will not read the rest
        head = s.recv(4096).decode(errors="replace")
    after = rss_kb([nginx_pid, *children(nginx_pid)])
    assert head.startswith("HTTP/1.1 413")
    assert "over the router's limit of 8388608 bytes" in head
    assert after - before < 100 * 1024


def test_a_late_stable_release_is_answered_for_by_the_previous_one(target, example):
    stable_worker = children(supervised(target)["releases"]["r0002"]["pid"])
    assert stable_worker
    for pid in stable_worker:
        os.kill(pid, signal.SIGSTOP)  # accepts connections, never answers: late
    try:
        t0 = time.monotonic()
        r = httpx.post(
            f"{target.url}/predict",
            json=example,
            headers={"x-request-id": "late-stable-1"},
            timeout=10,
        )
        took = time.monotonic() - t0
    finally:
        for pid in stable_worker:
            os.kill(pid, signal.SIGCONT)
    assert r.status_code == 200
    assert (r.headers["x-bentogate-routed-to"], r.headers["x-bentogate-release"]) == (
        "r0002",
        "r0001",
    )
    assert took < 5  # the budget, not the client's 10 s timeout (a busy machine adds seconds)
    last = access_line(target, "late-stable-1")
    assert (last["routed_to"], last["answered_by"]) == ("r0002", "r0001")
    # The release that answered logged it as a fallback, for the stable release it stood in for.
    logged = [
        json.loads(line)
        for line in (target.dir / "predictions.jsonl").read_text().splitlines()
        if '"late-stable-1"' in line
    ]
    answered = [p for p in logged if p["release"] == "r0001"]
    assert [(p["routed_to"], p["fallback"]) for p in answered] == [("r0002", True)]


def test_a_shadow_release_sees_every_request_and_never_answers_one(target, bento, example):
    from deploy import shadow_report

    shadow = target.shadow(bento, target.routing().release("r0002").model_tag)
    assert shadow.id == "r0003"
    ids = [f"shadow-{i}" for i in range(20)]
    answers = [
        httpx.post(f"{target.url}/predict", json=example, headers={"x-request-id": rid})
        for rid in ids
    ]
    assert [r.status_code for r in answers] == [200] * 20
    assert "r0003" not in {r.headers["x-bentogate-release"] for r in answers}
    shadow_log = target.dir / "nginx" / "logs" / "shadow.log"
    # Mirrored subrequests finish in the background, after the answers.
    wait_for(
        lambda: {x["request_id"] for x in shadow_report.read_jsonl(shadow_log)} >= set(ids), 10
    )
    mirrored = shadow_report.read_jsonl(shadow_log)
    assert {x["request_id"] for x in access_log(target)} >= set(ids)
    report = shadow_report.compare(
        access_log(target), mirrored, [], "sales:a", "sales:b", shadow.id, shadow.port
    )
    assert report["requests"] >= 20
    # The shadow answers; past its budget (a busy machine) nginx gives up on it with a 504.
    statuses = {int(x["status"]) for x in mirrored if x["request_id"] in ids}
    assert 200 in statuses and statuses <= {200, 504}, statuses


def wait_for(check, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# The bounds are generous on purpose: restarts take 1-2 s on a quiet machine (README), and a
# test must not fail because the machine is busy; they prove a restart, not its speed.
def test_a_killed_router_is_brought_back_and_status_reports_the_crash(target):
    before = supervised(target)["router"]["pid"]
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: supervised(target)["router"]["pid"] not in (None, before), timeout=30)
    wait_for(lambda: ready(target.url), timeout=30)
    status = target.status()
    assert status["verdict"] == "degraded"
    assert any(w.startswith("router crashed") for w in status["why"]), status["why"]


class Poller(threading.Thread):
    """A client calling the stable address every 20 ms; bounded in time."""

    def __init__(self, url: str, example: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.example = url, example
        self.answered_by: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r, _ = polling.post(client, f"{self.url}/predict", json=self.example)
                    if r.status_code == 200:
                        self.answered_by.append(r.headers["x-bentogate-release"])
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)


def test_a_killed_release_is_restarted_while_the_previous_one_answers_and_is_not_pinned(
    target, example
):
    before = supervised(target)["releases"]["r0002"]["pid"]
    poller = Poller(target.url, example)
    poller.start()
    try:
        time.sleep(0.2)
        os.kill(before, signal.SIGKILL)
        wait_for(lambda: supervised(target)["releases"]["r0002"]["pid"] not in (None, before), 30)
        status = target.status()
        # Back: it answers its own traffic again, and the supervisor's next looks at the log do
        # not pin it for the requests the previous release answered while it restarted.
        wait_for(lambda: poller.answered_by[-1:] == ["r0002"], 30)
        checks = supervised(target)["miss_checks"]
        wait_for(lambda: supervised(target)["miss_checks"] >= checks + 2, 30)
    finally:
        poller.stop.set()
        poller.join(15)
    assert status["verdict"] == "degraded"
    assert any(w.startswith("r0002 crashed") for w in status["why"]), status["why"]
    assert poller.failures == []
    assert "r0001" in poller.answered_by  # the previous release answered during the outage
    assert target.routing().fallback is None


def kill_supervisor(target: LocalTarget) -> None:
    pid = json.loads((target.dir / "router.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or zombie(pid), timeout=10)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def serving_pids(target: LocalTarget) -> dict[str, int]:
    state = supervised(target)
    return {"router": state["router"]["pid"], **{k: v["pid"] for k, v in state["releases"].items()}}


def test_a_supervisor_that_died_is_adopted_by_make_adopt_without_a_failed_request(target, example):
    before = serving_pids(target)
    poller = Poller(target.url, example)
    poller.start()
    try:
        time.sleep(0.5)
        kill_supervisor(target)
        status = target.status()
        time.sleep(1)  # serving goes on with nobody supervising it
        done = target.adopt()
        after = serving_pids(target)
        time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.join(15)
    assert any(w.endswith("(`make adopt ENV=staging MODEL=sales`)") for w in status["why"])
    assert after == before  # taken over, not restarted
    assert done["started"] == []
    assert done["supervisor"] == json.loads((target.dir / "router.json").read_text())["pid"]
    assert poller.failures == []
    assert len(poller.answered_by) > 20


def test_an_adopted_release_that_is_killed_is_restarted_by_the_new_supervisor(target, example):
    before = supervised(target)["releases"]["r0002"]
    poller = Poller(target.url, example)
    poller.start()
    try:
        time.sleep(0.2)
        os.kill(before["pid"], signal.SIGKILL)
        wait_for(
            lambda: supervised(target)["releases"]["r0002"]["pid"] not in (None, before["pid"]), 30
        )
        wait_for(lambda: ready(f"http://127.0.0.1:{target.routing().release('r0002').port}"), 60)
        time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.join(15)
    after = supervised(target)["releases"]["r0002"]
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_exit"] == "exited (adopted: its exit status went to init)"
    assert poller.failures == []


def test_deploying_again_after_the_supervisor_died_fails_no_request(target, bento, example):
    router = supervised(target)["router"]["pid"]
    poller = Poller(target.url, example)
    poller.start()
    try:
        time.sleep(0.5)
        kill_supervisor(target)
        time.sleep(0.5)
        release = target.deploy(bento, target.routing().release("r0002").model_tag)
        time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.join(15)
    assert poller.failures == []
    assert release.status == "live"
    assert supervised(target)["router"]["pid"] == router  # adopted, reloaded, never restarted


def test_a_broken_routing_file_stops_no_request_and_make_down_still_stops_everything(
    target, bento, production_tag, example
):
    # Last in this module: it ends with everything stopped.
    pids = serving_pids(target)
    poller = Poller(target.url, example)
    poller.start()
    try:
        (target.dir / "routing.json").write_text('{"releases": [')  # a disk that filled up
        # The supervisor has read it, and keeps its last good configuration.
        wait_for(lambda: "not applied" in (supervised(target)["error"] or ""), 30)
        status = target.status()
        with pytest.raises(UsageError, match="the routing file is broken"):
            target.deploy(bento, production_tag)
        time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.join(15)
    assert status["verdict"] == "broken"
    assert status["why"][1] == f"{target.url} still answers ready"
    assert poller.failures == []
    assert serving_pids(target) == pids
    stopped = target.down()
    assert "router on port" in stopped[-1]
    assert [pid for pid in pids.values() if not zombie(pid)] == []
    assert not ready(target.url)
