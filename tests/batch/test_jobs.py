"""Fire and forget: submit prints an id, status follows the job, Slack (a stand-in: no Slack here)
is told how it ended; a job killed midway leaves no `_SUCCESS` and no OUT, and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from core.settings import ROOT
from models import get_spec


@pytest.fixture
def stand_in_slack():
    """A loopback HTTP server standing in for Slack's incoming webhook."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(production_tag, tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML_HOME": os.environ["BENTOML_HOME"],
        "BENTOGATE_MODEL_TAG": production_tag,
        "BENTOGATE_BATCH_DIR": str(tmp_path / "jobs"),
    }


def batch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batch", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f}s")


def test_a_submitted_job_runs_in_the_background_shows_in_status_and_notifies_stand_in_slack(
    stand_in_slack, env, tmp_path
):
    url, received = stand_in_slack
    get_spec("sales").default_data(42).head(300).to_parquet(tmp_path / "in.parquet")
    args = ("--data", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out"))

    submitted = batch(
        "submit", *args, "--master", "local[1]", env={**env, "SLACK_WEBHOOK_URL": url}
    )

    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert batch("status", env=env).stdout.split()[:2] in (
        [job_id, "submitted"],
        [job_id, "running"],
    )
    wait_for(lambda: received, 240, "no notification")
    status = batch("status", job_id, env=env)
    assert status.stdout.split()[:2] == [job_id, "succeeded"], status.stdout
    assert "300/300 scored" in status.stdout
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    assert received[0]["text"].startswith(
        f":white_check_mark: bentogate batch job {job_id} succeeded"
    )


def test_a_job_killed_midway_leaves_no_success_marker_nor_output_and_status_says_it_failed(
    env, tmp_path
):
    rows = get_spec("sales").default_data(42)
    rows.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch",
            "score",
            *("--data", str(tmp_path / "in.parquet")),
            *("--out", str(out), "--master", "local[1]"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # The model archive appears in the staging folder once Spark runs the job: kill then.
        staged = wait_for(lambda: list(tmp_path.glob(".out.*.tmp/model-*.zip")), 120, "no job ran")
        os.killpg(proc.pid, signal.SIGKILL)  # the job, its JVM and Python workers: its own group
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    assert staged
    assert not out.exists()
    assert list(tmp_path.rglob("_SUCCESS")) == []
    status = batch("status", env=env).stdout
    assert status.split()[1] == "failed"
    assert "ended without a result" in status
