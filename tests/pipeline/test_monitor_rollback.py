"""Monitoring acting for real, in a copy of the project: two releases of two sales models deployed
to a local production environment (nginx and both releases on free loopback ports), predictions
served through the stable address, actuals that make the live model look bad posted to
POST /feedback there, then `python -m monitoring run`: it exits 1, rolls production
back to the previous release and tells a stand-in Slack (a loopback HTTP server: no Slack here).
Junk actuals are refused by POST /feedback, and those already in the log are skipped: they do not
switch the rollback off.
A second run judges the restored release, which has served nothing yet: no second rollback."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from core import registry
from core.process import free_port
from core.settings import ROOT
from monitoring import synthetic
from tests.conftest import copy_project, make
from tests.fixtures import polling

pytestmark = pytest.mark.slow

REQUESTS = 40
MONITOR_CONFIG = {
    "window": "1h",
    "quality": {"min_rows": 20, "ratchet_min_rows": 20},
    "drift": {"sample_rows": 1000, "min_rows": 20, "max_drifted_share": 1.0},
    "on_breach": {"production": "rollback"},
}


class StandInSlack(ThreadingHTTPServer):
    """Records the JSON bodies posted to it, answers 200 like Slack's webhook."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                outer.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)


@pytest.fixture(scope="module")
def slack():
    server = StandInSlack()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = copy_project(tmp_path_factory.mktemp("monitor") / "repo")
    cfg = yaml.safe_load((dest / "deploy" / "config.yaml").read_text())
    cfg["environments"]["production"]["local"].update(
        port=free_port(), ready_timeout_s=90, drain_s=0.5
    )
    (dest / "deploy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (dest / "monitoring" / "config.yaml").write_text(yaml.safe_dump(MONITOR_CONFIG))
    return dest


@pytest.fixture(scope="module")
def env(repo, slack) -> dict[str, str]:
    # The session's model store (tests/conftest.py): its production model is model A.
    return {"SLACK_WEBHOOK_URL": f"http://127.0.0.1:{slack.server_address[1]}/hook"}


def cli(repo: Path, *args: str, env: dict[str, str], timeout: float = 300):
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), *args],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def state(repo: Path, name: str):
    return json.loads((repo / ".bentogate" / "deploy" / "production" / "sales" / name).read_text())


def second_version(tag: str) -> str:
    """Model B: the production model's files registered again under a new tag (no training)."""
    model = registry.get(tag)
    meta = registry.metadata(model)
    own = ("files", "sklearn_version", "python_version", "bentoml_version")
    files = [Path(model.path_of(name)) for name in meta["files"]]
    return registry.register(
        "sales", metadata={k: v for k, v in meta.items() if k not in own}, git_commit="test",
        files=files,
    )  # fmt: skip


@pytest.fixture(scope="module")
def deployed(repo, env, production_tag):
    """Bento A (model A) deployed, then bento B (model B): B is live, A the previous release."""
    tags = [production_tag, second_version(production_tag)]
    try:
        for tag in tags:
            result = make(repo, "build", f"MODEL_TAG={tag}", env=env)
            assert result.returncode == 0, result.stderr
            bento = (repo / "build" / "bento-tag").read_text().strip()
            result = cli(repo, "-m", "deploy", "deploy", "production", bento, env=env)
            assert result.returncode == 0, result.stderr
        yield tags
    finally:
        make(repo, "down", env=env)
        registry.promote(production_tag)  # whatever happened: model A is production again


def stable_url(repo: Path) -> str:
    port = yaml.safe_load((repo / "deploy" / "config.yaml").read_text())["environments"][
        "production"
    ]["local"]["port"]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(repo, env, deployed) -> list[tuple[str, float]]:
    """(request id, prediction) of requests answered through the stable address, once the
    prediction log holds them all."""
    url = stable_url(repo)
    example = polling.predict_example(url)
    out = []
    with httpx.Client(timeout=30) as client:
        for i in range(REQUESTS):
            rid = f"t{i:04d}"
            r = client.post(f"{url}/predict", json=example, headers={"x-request-id": rid})
            assert r.status_code == 200
            out.append((rid, r.json()["predictions"][0]))
    log = repo / ".bentogate" / "deploy" / "production" / "sales" / "predictions.jsonl"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged = log.read_text() if log.is_file() else ""
        if all(f'"{rid}"' in logged for rid, _ in out):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the prediction log does not hold every answered request id")
    return out


# What any client could send before /feedback checked actuals: each switched the checks off
# (a string: the monitor exited 3; 1e308: its metrics were infinite), and the rollback with them.
JUNK = ("lots", "NaN", 1e308)


@pytest.fixture(scope="module")
def junk(repo, served) -> httpx.Response:
    """Junk actuals posted to POST /feedback for three served requests, and the same written to
    the actuals log as the latest for them (as a release before the check accepted them)."""
    actuals = [
        {"request_id": rid, "actual": a} for (rid, _), a in zip(served[:3], JUNK, strict=True)
    ]
    r = httpx.post(f"{stable_url(repo)}/feedback", json={"actuals": actuals}, timeout=30)
    log = repo / ".bentogate" / "deploy" / "production" / "sales" / "actuals.jsonl"
    later = datetime.now(UTC) + timedelta(minutes=1)
    synthetic.write_lines(
        log, [synthetic.actual_line(a["request_id"], a["actual"], later) for a in actuals]
    )
    return r


@pytest.fixture(scope="module")
def first_run(repo, env, served, junk):
    """Actuals far from every prediction, posted to POST /feedback at the stable address, then
    the monitor."""
    now = datetime.now(UTC).isoformat()
    actuals = [{"request_id": rid, "actual": p * 40 + 200, "observed_at": now} for rid, p in served]
    r = httpx.post(f"{stable_url(repo)}/feedback", json={"actuals": actuals}, timeout=30)
    assert r.status_code == 202, r.text
    return cli(repo, "-m", "monitoring", "run", "production", env=env)


def test_a_live_model_whose_actuals_go_bad_is_rolled_back_and_reported(repo, deployed, first_run):
    assert first_run.returncode == 1, first_run.stderr
    assert "production/sales: DEGRADED (live nwrmsle = " in first_run.stdout
    routing = state(repo, "routing.json")
    stable = next(r for r in routing["releases"] if r["id"] == routing["stable"])
    assert stable["model_tag"] == deployed[0]
    # The breaching release is nobody's fallback: it stopped after the drain.
    assert routing["previous"] is None
    assert [r["id"] for r in routing["releases"]] == [routing["stable"]]
    history = state(repo, "history.json")
    live = [r for r in history if r["status"] == "live"]
    assert [(r["id"], r["rollback_of"]) for r in live] == [("r0001", "r0002")]
    summary = json.loads(
        (repo / "reports" / "monitor" / "production-sales" / "summary.json").read_text()
    )
    assert summary["verdict"] == "DEGRADED"
    assert summary["action"].startswith("Rolled back")
    page = (repo / "reports" / "monitor" / "production-sales" / "report.html").read_text()
    assert "production/sales: DEGRADED</h1>" in page
    verdict = page[page.index('<div class="verdict">') : page.index("</div>")]
    assert "<b>gate:nwrmsle</b>: live nwrmsle = " in verdict  # what failed and why, up top
    assert "What to do next:</b> This run acted: Rolled back" in verdict


def test_junk_actuals_get_400_and_those_already_stored_are_skipped_not_stopping_the_rollback(
    repo, junk, first_run
):
    assert junk.status_code == 400, junk.text
    assert junk.json()["field"] == "actuals[0].actual"
    assert first_run.returncode == 1, first_run.stdout + first_run.stderr

    def refuse(word: str):
        raise ValueError(f"summary.json is not strict JSON: {word}")

    summary = json.loads(
        (repo / "reports" / "monitor" / "production-sales" / "summary.json").read_text(),
        parse_constant=refuse,
    )
    (live,) = [v for v in summary["versions"] if v["live"]]
    assert (live["joined"], live["skipped_actuals"]) == (REQUESTS - 3, 3)
    assert summary["action"].startswith("Rolled back")


def test_the_stand_in_slack_is_told_why_and_what_was_done(slack, first_run):
    assert len(slack.posts) == 1
    text = slack.posts[0]["text"]
    assert "production/sales DEGRADED: live nwrmsle" in text
    assert "Rolled back" in text


def test_the_next_run_judges_the_restored_release_and_does_not_roll_back_again(
    repo, env, slack, first_run
):
    releases = len(state(repo, "history.json"))
    again = cli(repo, "-m", "monitoring", "run", "production", env=env)
    assert again.returncode == 0, again.stderr
    assert "production/sales: NO DATA" in again.stdout
    assert len(state(repo, "history.json")) == releases
    assert len(slack.posts) == 1
