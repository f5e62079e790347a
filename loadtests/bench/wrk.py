"""Drive one server with wrk (closed loop, keep-alive connections), bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")
MARK = "wrk-json "


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
) -> dict[str, float]:
    """POST `body` to `url` over `connections` connections for `duration_s`; return req/s, the
    P50/P90/P99/max latency (ms, wrk's coordinated-omission-corrected figures) and errors: socket
    errors, timeouts (no answer within `timeout_s`) and non-2xx/3xx answers."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    cmd = [
        *pin,
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
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
    raw = json.loads(line[len(MARK) :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1000,
        "p90": raw["p90_us"] / 1000,
        "p99": raw["p99_us"] / 1000,
        "max": raw["max_us"] / 1000,
        "errors": errors,
        "error_rate": errors / max(raw["requests"] + raw["timeout"], 1),
    }
