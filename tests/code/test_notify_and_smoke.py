"""Notifications reach a (stand-in) Slack webhook; the smoke test fails when nothing answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from core.process import free_port
from deploy import notify, smoke


@pytest.fixture
def stand_in_slack():
    """A loopback HTTP server standing in for Slack's incoming webhook (no Slack here)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            status = 200 if self.path == "/hook" else 404
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"no_service")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_notify_posts_the_outcome_to_a_stand_in_slack_webhook(stand_in_slack):
    url, received = stand_in_slack
    notify.slack(f"{url}/hook", notify.message("failure", "model sales:x", "https://ci/run/1"))
    assert received == [
        {"text": ":x: bentogate delivery failure: model sales:x (<https://ci/run/1|run>)"}
    ]


def test_notify_reports_a_webhook_that_refuses_without_echoing_its_url(stand_in_slack):
    url, _ = stand_in_slack
    with pytest.raises(notify.NotifyError, match="answered 404: no_service") as info:
        notify.slack(f"{url}/secret-token", "hello")
    assert "secret-token" not in str(info.value)


def test_smoke_test_fails_when_nothing_listens():
    checks = smoke.smoke(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert not smoke.passed(checks)
    assert checks[-1].name == "reachable"
