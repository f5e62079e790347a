"""The prediction log loses no answered prediction when the worker is SIGKILLed: a real server
(`bentoml serve` on a free loopback port) under a stream of requests, its worker killed three
times (BentoML does not restart a killed worker: the server is restarted, on the same port)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.process import Server, free_port
from core.settings import ROOT

pytestmark = pytest.mark.slow

CLIENTS = 4
KILLS = 3
PER_KILL = 500  # answered requests between kills
DEADLINE_S = 600  # bounds the whole run: 2,000 answers and three restarts, on a busy machine


def worker_pids(server: Server) -> list[int]:
    assert server.proc is not None
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != server.proc.pid:
                continue
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"_bentoml_impl.worker" in cmdline:
            out.append(int(stat.parent.name))
    return out


def test_no_answered_prediction_is_lost_when_the_worker_is_sigkilled_three_times(
    production_tag, tmp_path
):
    log = tmp_path / "predictions.jsonl"
    port = free_port()
    env = {
        "BENTOGATE_MODEL_TAG": production_tag,
        "BENTOGATE_PREDICTION_LOG": str(log),
        "BENTOGATE_ACTUALS_LOG": "off",
    }

    def start() -> Server:
        server = Server("service:Predictor", port=port, env=env, cwd=ROOT)
        server.log_path = tmp_path / "server.log"
        server.start().wait_ready(90)
        return server

    server = start()
    url = f"{server.url}/predict"
    example = httpx.get(f"{server.url}/docs.json").json()["paths"]["/predict"]["post"][
        "requestBody"
    ]["content"]["application/json"]["schema"]["example"]
    answered: list[str] = []
    stop = threading.Event()
    deadline = time.monotonic() + DEADLINE_S

    def client(n: int) -> None:
        with httpx.Client(timeout=5) as c:
            for i in range(20_000):  # bounded in count and in time
                if stop.is_set() or time.monotonic() > deadline:
                    return
                rid = f"c{n}-{i}"
                try:
                    r = c.post(url, json=example, headers={"x-request-id": rid})
                except httpx.HTTPError:
                    time.sleep(0.01)  # the server is down: retry shortly
                    continue
                if r.status_code == 200:
                    answered.append(rid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    killed = 0
    try:
        for k in range(1, KILLS + 1):
            while len(answered) < k * PER_KILL and time.monotonic() < deadline:
                time.sleep(0.01)
            workers = worker_pids(server)
            assert workers, "no worker found"
            for pid in workers:
                os.kill(pid, signal.SIGKILL)  # mid-stream: requests are in flight
            killed += 1
            server.stop()
            server = start()
        while len(answered) < (KILLS + 1) * PER_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        server.stop()
    logged = {json.loads(line)["request_id"] for line in log.read_text().splitlines()}
    assert killed == KILLS
    assert len(answered) >= (KILLS + 1) * PER_KILL
    assert [rid for rid in answered if rid not in logged] == []
