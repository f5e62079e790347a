"""The local target's router, in process: no release means a clear 503, never a 500."""

from __future__ import annotations

import json

from starlette.testclient import TestClient

from core.process import free_port
from deploy.router import app


def test_router_without_a_release_answers_503_naming_the_environment(tmp_path):
    client = TestClient(app(tmp_path / "route.json", "staging"))
    response = client.post("/predict", json={"records": []})
    assert response.status_code == 503
    assert response.json() == {"error": "no release is serving environment 'staging'"}


def test_router_answers_502_when_its_release_is_unreachable(tmp_path):
    route = tmp_path / "route.json"
    route.write_text(json.dumps({"release": "r0001", "url": f"http://127.0.0.1:{free_port()}"}))
    client = TestClient(app(route, "staging"))
    response = client.get("/readyz")
    assert response.status_code == 502
    assert "release of 'staging' unreachable" in response.json()["error"]
