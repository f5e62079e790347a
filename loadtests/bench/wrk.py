"""Drive one server with wrk (closed loop, keep-alive connections), bounded in time, and pool runs.

A point of `make bench` is measured in rounds that alternate between servers, so that a change in
the machine's background load falls on all of them alike; `pool` merges a server's rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).with_name("wrk.lua")
MARK = "wrk-json "
ERRORS = ("connect", "read", "write", "status", "timeout")


class WrkError(RuntimeError):
    pass


def wrk_path() -> str:
    path = os.environ.get("WRK") or shutil.which("wrk")
    if not path:
        raise WrkError(
            "wrk is not installed: `make bench` installs it (Debian/Ubuntu: apt-get install wrk)"
        )
    return path


def run_wrk(
    url: str,
    body: Path,
    connections: int,
    duration_s: float,
    cpu: int | None = None,
    timeout_s: float = 10.0,
) -> dict:
    """POST `body` to `url` over `connections` connections for `duration_s`: wrk's counts, and its
    latency distribution (coordinated-omission corrected) as 1000 quantiles in microseconds."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    cmd = [
        *pin,
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(SCRIPT),
        url,
    ]
    env = {**os.environ, "BENTOGATE_WRK_BODY": str(body)}
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk ({connections} connections) did not finish in time") from None
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise WrkError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    return json.loads(line[len(MARK) :])


def pool(runs: list[dict]) -> dict[str, float]:
    """One figure from several runs: req/s over their total time, P50/P90/P99 (ms) of their pooled
    distributions (each quantile weighs its run's requests / 1000), errors summed (socket errors,
    timeouts and non-2xx/3xx answers)."""
    values = np.concatenate([np.asarray(r["quantiles_us"], dtype=float) for r in runs])
    weights = np.concatenate([np.full(len(r["quantiles_us"]), max(r["requests"], 1)) for r in runs])
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[order]) / weights.sum()

    def percentile(p: float) -> float:
        return float(values[min(np.searchsorted(cumulative, p / 100), len(values) - 1)]) / 1000

    requests = sum(r["requests"] for r in runs)
    errors = sum(r[k] for r in runs for k in ERRORS)
    return {
        "requests": requests,
        "rps": requests / (sum(r["duration_us"] for r in runs) / 1e6),
        "p50": percentile(50),
        "p90": percentile(90),
        "p99": percentile(99),
        "max": max(r["max_us"] for r in runs) / 1000,
        "errors": errors,
        "error_rate": errors / max(requests + sum(r["timeout"] for r in runs), 1),
    }
