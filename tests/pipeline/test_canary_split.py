"""The canary's split in the real nginx, in front of two stand-in upstreams (tiny HTTP servers on
loopback, no model needed): a client key always lands on the same release, and the weight is the
share of requests without one."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from core.process import free_port
from deploy import nginx
from deploy.routing import CanaryRoute, RoutedRelease, Routing


def upstream(name: str, status: int = 200, told: list[str] | None = None) -> ThreadingHTTPServer:
    """A stand-in release answering `status`; `told` collects the x-bentogate-routed-to header
    the router sent it (the release a prediction was meant for)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if told is not None:
                told.append(self.headers.get("x-bentogate-routed-to", ""))
            body = json.dumps({"release": name}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def serving(tmp_path: Path, servers: list[ThreadingHTTPServer], weight: int = 30) -> Iterator[str]:
    """nginx with r0001 stable and r0002 the canary at `weight`% (sticky on x-client-id)."""
    releases = [
        RoutedRelease(
            id=f"r000{i}",
            bento=f"sales_api:v{i}",
            model_tag=f"sales:v{i}",
            port=s.server_address[1],
            routed=True,
        )
        for i, s in enumerate(servers, 1)
    ]
    port = free_port()
    routing = Routing(
        environment="staging",
        model="sales",
        port=port,
        releases=releases,
        stable="r0001",
        canary=CanaryRoute(release="r0002", weight=weight, sticky_header="x-client-id"),
    )
    prefix = tmp_path / "nginx"
    conf = nginx.write_checked(routing, prefix)
    proc = subprocess.Popen(nginx.command(prefix, conf), stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path, [upstream("r0001"), upstream("r0002")]) as url:
        yield url


def test_one_client_key_always_lands_on_the_same_release_at_a_given_weight(router):
    seen: dict[str, set[str]] = {}
    with httpx.Client() as client:
        for n in range(40):
            key = f"client-{n}"
            for _ in range(5):
                r = client.post(f"{router}/predict", json={}, headers={"x-client-id": key})
                assert r.status_code == 200
                seen.setdefault(key, set()).add(r.headers["x-bentogate-routed-to"])
    assert all(len(releases) == 1 for releases in seen.values()), seen
    on_canary = sum(releases == {"r0002"} for releases in seen.values())
    assert 0 < on_canary < 40


def test_requests_without_a_client_key_are_split_by_the_weight(router):
    with httpx.Client() as client:
        routed = Counter(
            client.post(f"{router}/predict", json={}).headers["x-bentogate-routed-to"]
            for _ in range(300)
        )
    assert set(routed) == {"r0001", "r0002"}
    assert 0.15 < routed["r0002"] / 300 < 0.45


def test_a_request_the_canary_fails_is_answered_by_stable_and_logged_as_routed_to_the_canary(
    tmp_path,
):
    told: list[str] = []
    servers = [upstream("r0001", told=told), upstream("r0002", status=500)]
    with serving(tmp_path, servers, weight=100) as url:
        r = httpx.post(f"{url}/predict", json={}, headers={"x-bentogate-routed-to": "forged"})

    assert r.status_code == 200
    assert (r.headers["x-bentogate-routed-to"], r.headers["x-bentogate-release"]) == (
        "r0002",
        "r0001",
    )
    assert told == ["r0002"]  # stable logs its prediction as a fallback from the canary
    access = (tmp_path / "nginx" / "logs" / "access.log").read_text().splitlines()
    record = json.loads(access[-1])
    assert (record["routed_to"], record["answered_by"]) == ("r0002", "r0001")
