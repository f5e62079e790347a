"""Drive one server with wrk (closed loop, keep-alive connections), bounded in time, and pool runs.

A point of `make bench` is measured in rounds that alternate between servers, so that a change in
the machine's background load falls on all of them alike; `pool` makes one figure of a server's
rounds, robust to a burst of background load in one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")
MIX_SCRIPT = Path(__file__).with_name("wrk_mix.lua")  # predicts with a feedback every N requests
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
    script: Path = SCRIPT,
    env: dict[str, str] | None = None,
) -> dict:
    """POST `body` to `url` over `connections` connections for `duration_s`: wrk's counts and its
    latency percentiles (coordinated-omission corrected, microseconds). `script`, `env`: another
    wrk script (e.g. MIX_SCRIPT) and the variables it reads."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    cmd = [
        *pin,
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    env = {**os.environ, **(env or {}), "BENTOGATE_WRK_BODY": str(body)}
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
    """One figure from several rounds: req/s over their total time, the median of the rounds'
    P50/P90/P99 (ms; a background burst in one round moves its tail, not the median), errors
    summed (socket errors, timeouts and non-2xx/3xx answers)."""
    requests = sum(r["requests"] for r in runs)
    errors = sum(r[k] for r in runs for k in ERRORS)
    figures = {
        "requests": requests,
        "rps": requests / (sum(r["duration_us"] for r in runs) / 1e6),
        "max": max(r["max_us"] for r in runs) / 1000,
        "errors": errors,
        "error_rate": errors / max(requests + sum(r["timeout"] for r in runs), 1),
    }
    for p in ("p50", "p90", "p99"):
        figures[p] = statistics.median(r[f"{p}_us"] for r in runs) / 1000
    return figures
