"""The truth about one model in one environment, asked from outside as a client would: its stable
address, and each release the routing file names, each on its own /readyz. Pure but for the HTTP.

serving: the stable address answers ready and every routed release is ready.
degraded: the stable address answers, but something is wrong (a release not ready, the router
  answering from the fallback, the supervisor gone): each reason is listed.
down: the stable address does not answer ready.
broken: the routing file cannot be read: no deploy or rollback until it is put right (the
  router keeps its last good configuration; whether the address answers is listed).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from deploy.routing import Routing

TIMEOUT_S = 2.0


def _ready(client: httpx.Client, url: str) -> tuple[bool, str, httpx.Response | None]:
    try:
        r = client.get(f"{url}/readyz")
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}", None
    return r.status_code == 200, f"/readyz {r.status_code}", r


RECENT_S = 30.0  # a crash this recent is reported even once its process is back


def _crashes(supervised: dict[str, Any], now: float) -> list[str]:
    children = {"router": supervised.get("router"), **supervised.get("releases", {})}
    out = []
    for name, info in children.items():
        when = (info or {}).get("last_restart")
        if when is not None and now - when < RECENT_S:
            out.append(
                f"{name} crashed {now - when:.0f}s ago ({info['last_exit']}) and was restarted"
                f" ({info['restarts']} restarts)"
            )
    return out


def broken(url: str, why: str) -> dict[str, Any]:
    with httpx.Client(timeout=TIMEOUT_S) as client:
        ok, detail, _ = _ready(client, url)
    answers = f"{url} still answers ready" if ok else f"{url} {detail}"
    return {"verdict": "broken", "why": [why, answers], "releases": {}}


def check(
    url: str,
    routing: Routing | None,
    supervised: dict[str, Any] | None,
    now: float | None = None,
    recover: str = "deploy again",
) -> dict[str, Any]:
    """`supervised`: the supervisor's state file if it runs, else None; `recover`: the command
    that gives a running router and releases a supervisor again."""
    if routing is None or routing.stable is None:
        return {"verdict": "not deployed", "why": [], "releases": {}}
    why: list[str] = []
    releases: dict[str, str] = {}
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for r in routing.releases:
            ok, detail, _ = _ready(client, f"http://{routing.host}:{r.port}")
            releases[r.id] = "ready" if ok else f"not ready ({detail})"
            if not ok and r.routed:
                why.append(f"{r.id} not ready ({detail})")
        ok, detail, response = _ready(client, url)
    if supervised is None:
        why.append(f"the supervisor is not running: nothing restarts a crash (`{recover}`)")
    else:
        why += _crashes(supervised, time.time() if now is None else now)
    if not ok:
        return {"verdict": "down", "why": [f"{url} {detail}", *why], "releases": releases}
    answered = response.headers.get("x-bentogate-release") if response else None
    expected = {routing.stable} | ({routing.canary.release} if routing.canary else set())
    if routing.fallback is not None:
        why.append(
            f"stable {routing.stable} is pinned to the previous release {routing.previous}:"
            f" {routing.fallback_reason or 'sustained budget miss'} (`make unpin` or deploy)"
        )
    elif answered not in expected:
        why.append(f"stable {routing.stable} is not answering: {answered or 'nothing'} answers")
    return {"verdict": "degraded" if why else "serving", "why": why, "releases": releases}
