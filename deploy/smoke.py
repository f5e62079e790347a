"""Smoke test of a running release: the checks a release must pass before and after it takes
traffic. Pure HTTP against a URL, so it runs the same on the local target, Kubernetes or anything
else that serves the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SmokeCheck:
    name: str
    passed: bool
    detail: str


def example_request(openapi: dict[str, Any]) -> dict[str, Any]:
    """The valid example request the service publishes in its OpenAPI document."""
    content = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]
    return content["application/json"]["schema"]["example"]


def smoke(
    url: str,
    model_tag: str | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> list[SmokeCheck]:
    """Readiness, a valid prediction (from the model that should answer) and a clean 400."""
    checks: list[SmokeCheck] = []

    def add(name: str, passed: bool, detail: str) -> bool:
        checks.append(SmokeCheck(name, passed, detail))
        return passed

    try:
        with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:
            ready = client.get("/readyz")
            if not add("ready", ready.status_code == 200, f"/readyz -> {ready.status_code}"):
                return checks
            example = example_request(client.get("/docs.json").json())
            ok = client.post("/predict", json=example)
            body = (
                ok.json()
                if ok.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            preds = body.get("predictions")
            add(
                "predict",
                ok.status_code == 200
                and isinstance(preds, list)
                and len(preds) == len(example["records"]),
                f"POST /predict (OpenAPI example) -> {ok.status_code}, "
                f"{len(preds) if isinstance(preds, list) else 'no'} predictions",
            )
            if model_tag is not None:
                add(
                    "model",
                    body.get("model") == model_tag,
                    f"answered by {body.get('model')!r}, expected {model_tag!r}",
                )
            bad = client.post("/predict", json={"records": [{"no_such_field": 1}]})
            add(
                "bad_input", bad.status_code == 400, f"POST /predict (invalid) -> {bad.status_code}"
            )
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        add("reachable", False, f"{url}: {type(exc).__name__}: {exc}")
    return checks


def passed(checks: list[SmokeCheck]) -> bool:
    return bool(checks) and all(c.passed for c in checks)


def describe(checks: list[SmokeCheck]) -> str:
    return "; ".join(f"{c.name} {'ok' if c.passed else 'FAILED'} ({c.detail})" for c in checks)
