"""Run Locust headless as a subprocess, bounded in time, and summarize its exact samples."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.process import free_port

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST = str(Path(sys.executable).with_name("locust"))


class LoadRunError(RuntimeError):
    pass


@dataclass(frozen=True)
class Load:
    users: int
    spawn_rate: float
    duration_s: float
    rate_per_user: float = 0.0  # 0 = closed loop
    warmup_s: float = 0.0
    workers: int = 0  # 0 = one local process; N = a master and N worker processes


def _taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def run_locust(
    url: str, bodies: Path, load: Load, out_dir: Path, name: str, cpu: int | None = None
) -> pd.DataFrame:
    """Run one load and return its samples (t_start, latency_ms, ok, status) after the warm-up."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = out_dir / f"{name}_samples.csv"
    for old in out_dir.glob(f"{name}_samples*.csv"):
        old.unlink()
    env = {
        **os.environ,
        "BENTOGATE_LOAD_BODIES": str(bodies),
        "BENTOGATE_LOAD_RATE": str(load.rate_per_user),
        "BENTOGATE_LOAD_SAMPLES": str(samples),
        "BENTOGATE_LOAD_WARMUP": str(load.warmup_s),
        "PYTHONUNBUFFERED": "1",
    }
    base = [
        LOCUST,
        "-f",
        str(LOCUSTFILE),
        "--host",
        url,
        "--headless",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    run = [
        "-u",
        str(load.users),
        "-r",
        str(load.spawn_rate),
        "-t",
        f"{load.warmup_s + load.duration_s:.0f}s",
        "--csv",
        str(out_dir / name),
        "--html",
        str(out_dir / f"{name}.html"),
    ]
    procs: list[subprocess.Popen[bytes]] = []
    log = open(out_dir / f"{name}_locust.log", "wb")  # noqa: SIM115
    try:
        if load.workers:
            port = free_port()
            master = [
                *base,
                *run,
                "--master",
                "--expect-workers",
                str(load.workers),
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
            ]
            procs.append(
                subprocess.Popen(
                    [*_taskset(cpu), *master],
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
            for _ in range(load.workers):
                procs.append(
                    subprocess.Popen(
                        [
                            *_taskset(cpu),
                            *base,
                            "--worker",
                            "--master-host",
                            "127.0.0.1",
                            "--master-port",
                            str(port),
                        ],
                        env=env,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )
        else:
            procs.append(
                subprocess.Popen(
                    [*_taskset(cpu), *base, *run],
                    env=env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        deadline = load.warmup_s + load.duration_s + 60
        code = procs[0].wait(timeout=deadline)
        for p in procs[1:]:
            p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise LoadRunError(f"locust ({name}) did not finish in time; see {log.name}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        log.close()
    if code != 0:
        raise LoadRunError(
            f"locust ({name}) exited with {code}; see {out_dir / f'{name}_locust.log'}"
        )
    files = sorted(out_dir.glob(f"{name}_samples*.csv"))
    if not files:
        raise LoadRunError(
            f"locust ({name}) wrote no samples; see {out_dir / f'{name}_locust.log'}"
        )
    types: dict[Hashable, Any] = {"t_start": float, "latency_ms": float, "ok": int, "status": int}
    return pd.concat([pd.read_csv(f, dtype=types) for f in files], ignore_index=True)


def summarize(samples: pd.DataFrame, duration_s: float) -> dict[str, float]:
    """Exact percentiles (ms), throughput and error rate of a run's samples."""
    n = len(samples)
    if n == 0:
        return {
            "requests": 0,
            "rps": 0.0,
            "error_rate": 1.0,
            "p50": float("nan"),
            "p90": float("nan"),
            "p99": float("nan"),
        }
    lat = samples["latency_ms"].to_numpy()
    ok = samples["ok"].to_numpy().astype(bool)
    span = max(duration_s, 1e-9)
    return {
        "requests": n,
        "rps": n / span,
        "error_rate": float(1 - ok.mean()),
        "p50": float(np.percentile(lat, 50)),
        "p90": float(np.percentile(lat, 90)),
        "p99": float(np.percentile(lat, 99)),
    }
