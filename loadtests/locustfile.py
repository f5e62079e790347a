"""Locust traffic for the predict API, driven by environment variables the runner sets.

BENTOGATE_LOAD_BODIES   JSON-lines file of request bodies (built from held-out data), sent in turn
BENTOGATE_LOAD_RATE     requests/s per user (open loop, constant_throughput); 0 = closed loop
BENTOGATE_LOAD_SAMPLES  CSV file for exact per-request samples: t_start,latency_ms,ok,status
BENTOGATE_LOAD_WARMUP   seconds from the start whose requests are not recorded

Locust's own percentiles are rounded into buckets, too coarse for millisecond latencies, so every
request is recorded exactly here and the runner computes the gated figures from these samples.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, events, task

BODIES = [
    line.encode()
    for line in Path(os.environ["BENTOGATE_LOAD_BODIES"]).read_text().splitlines()
    if line
]
RATE = float(os.environ.get("BENTOGATE_LOAD_RATE", "0"))
SAMPLES = os.environ.get("BENTOGATE_LOAD_SAMPLES")
WARMUP = float(os.environ.get("BENTOGATE_LOAD_WARMUP", "0"))
HEADERS = {"content-type": "application/json"}

_start = time.time()
_rows: list[str] = []


@events.request.add_listener
def _record(
    request_type, name, response_time, response_length, response, exception, start_time=None, **kw
):
    t = start_time if start_time is not None else time.time() - response_time / 1000
    if t - _start < WARMUP:
        return
    status = getattr(response, "status_code", 0) or 0
    _rows.append(f"{t:.6f},{response_time:.4f},{int(exception is None)},{status}")


@events.quitting.add_listener
def _write_samples(environment, **kw):
    if SAMPLES and environment.runner is not None:
        # In a distributed run each worker writes its own file; the master has no samples.
        path = Path(SAMPLES)
        worker = getattr(environment.runner, "worker_index", None)
        if worker is not None:
            path = path.with_name(f"{path.stem}.worker{worker}{path.suffix}")
        path.write_text(
            "t_start,latency_ms,ok,status\n" + "\n".join(_rows) + ("\n" if _rows else "")
        )


class PredictUser(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    def on_start(self) -> None:
        # Each user walks the bodies from its own random offset: varied, reproducible traffic.
        self._bodies = itertools.islice(
            itertools.cycle(BODIES), random.randrange(len(BODIES)), None
        )

    @task
    def predict(self) -> None:
        body = next(self._bodies)
        # locust sends bytes as they are (its docstring says so); its annotation of data omits bytes.
        with self.client.post(
            "/predict",
            data=body,  # type: ignore[arg-type]
            headers=HEADERS,
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200] if r.text else ''}")
            elif b'"predictions"' not in (r.content or b""):
                r.failure("no predictions in the response")
