"""`make bench-logging` (also part of `make bench`): what the prediction log and a feedback stream
cost the predict throughput, in one run (issue 13: at most 5% at 32 clients).

Two copies of our service are up for the whole run, pinned to core 0 (wrk on core 1): one
writing the prediction and actuals logs to files, as a deploy does, one with both logs `off`.
Three loads take turns in alternating rounds (bench/run.py's `measure_point`):

- `off`: predicts only, to the service without logs: the baseline;
- `log`: predicts only, to the service with the prediction log;
- `log+feedback`: the same, with one POST /feedback of FEEDBACK_ITEMS actuals every EVERY
  requests (one actual per ~10 predictions), as systems that observe outcomes send them.

Figures: predict req/s (for `log+feedback`, the predicts among its requests) over the baseline's,
pooled over the rounds and round by round; the target reads the median round's ratio.
Report: reports/bench/logging.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

from core.process import Server
from core.settings import ROOT, get_settings
from loadtests import traffic
from loadtests.bench.run import PIN_SERVER, measure_point
from loadtests.bench.wrk import MIX_SCRIPT, WrkError, wrk_path
from serving.runtime import NoModelError, resolve_tag

EVERY = 100  # one feedback request per EVERY requests...
FEEDBACK_ITEMS = 10  # ... carrying this many actuals: ~1 actual per 10 predictions
TARGET = 0.95


def bench(tag: str, clients: int, duration: float, warmup: float, rounds: int, out: Path) -> dict:
    schema, _ = traffic.held_out(tag)
    body = out / "logging_body.json"
    body.write_text(json.dumps({"records": [schema.example_record()]}))
    feedback = out / "logging_feedback.json"
    actuals = [{"request_id": f"bench-{i}", "actual": 1.5} for i in range(FEEDBACK_ITEMS)]
    feedback.write_text(json.dumps({"actuals": actuals}))
    logs = out / "logging"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.jsonl*"):
        old.unlink()
    variants = {
        "log": {
            "BENTOGATE_PREDICTION_LOG": str(logs / "predictions.jsonl"),
            "BENTOGATE_ACTUALS_LOG": str(logs / "actuals.jsonl"),
        },
        "off": {"BENTOGATE_PREDICTION_LOG": "off", "BENTOGATE_ACTUALS_LOG": "off"},
    }
    servers: dict[str, Server] = {}
    runs: dict[str, list[dict]] = {}
    try:
        for name, env in variants.items():
            server = servers[name] = Server(
                "service:Predictor",
                prefix=PIN_SERVER,
                cwd=ROOT,
                env={"BENTOGATE_MODEL_TAG": tag, **env},
                log_path=out / f"logging_{name}_server.log",
            )
            print(f"[bench-logging] {name}: starting", file=sys.stderr)
            server.start()
            server.wait_ready(90)
        url = {name: f"{s.url}/predict" for name, s in servers.items()}
        mix = {"BENTOGATE_WRK_EVERY": str(EVERY), "BENTOGATE_WRK_FEEDBACK": str(feedback)}
        point = measure_point(
            {"off": url["off"], "log": url["log"], "log+feedback": url["log"]},
            body,
            clients,
            duration,
            warmup,
            rounds,
            script=MIX_SCRIPT,
            wrk_env={"log+feedback": mix},
            runs_out=runs,
        )
    finally:
        for server in servers.values():
            server.stop()
    point["log+feedback"]["predict_rps"] = point["log+feedback"]["rps"] * (EVERY - 1) / EVERY
    for name in ("off", "log"):
        point[name]["predict_rps"] = point[name]["rps"]
    base = point["off"]["predict_rps"]
    ratios = {name: point[name]["predict_rps"] / base for name in ("log", "log+feedback")}
    # The same ratio round by round (the loads of a round run within a minute of each other):
    # its median is robust to a burst of other work on the machine during one round.
    share = {"off": 1.0, "log": 1.0, "log+feedback": (EVERY - 1) / EVERY}

    def rps(run: dict, name: str) -> float:
        return share[name] * run["requests"] / (run["duration_us"] / 1e6)

    per_round = {
        name: [rps(a, name) / rps(b, "off") for a, b in zip(runs[name], runs["off"], strict=True)]
        for name in ("log", "log+feedback")
    }
    medians = {name: statistics.median(v) for name, v in per_round.items()}
    logged = sum(
        1 for p in logs.glob("predictions.jsonl*") if p.suffix != ".lock" for _ in p.open()
    )
    return {
        "model": tag,
        "date": dt.date.today().isoformat(),
        "clients": clients,
        "duration_s": duration,
        "rounds": rounds,
        "feedback": {"every": EVERY, "actuals_per_request": FEEDBACK_ITEMS},
        "figures": point,
        "ratios": ratios,
        "ratios_per_round": per_round,
        "ratios_median_round": medians,
        "lines_logged": logged,
        "targets": {
            "logging_and_feedback_32": {
                "target": f"predict req/s with log and feedback >= {TARGET:.0%} of without",
                "value": medians["log+feedback"],
                "met": medians["log+feedback"] >= TARGET,
            },
            "errors": {
                "target": "no errors",
                "value": sum(point[n]["errors"] for n in point),
                "met": all(point[n]["errors"] == 0 for n in point),
            },
        },
    }


def markdown(r: dict) -> str:
    f = r["feedback"]
    lines = [
        f"### Logging cost: `{r['model']}`, {r['clients']} clients ({r['date']})",
        "",
        f"wrk, keep-alive; {r['duration_s']:g} s per load in {r['rounds']} alternating rounds; "
        "servers on core 0, wrk on core 1. `log+feedback`: one POST /feedback of "
        f"{f['actuals_per_request']} actuals every {f['every']} requests.",
        "",
        "| load | req/s | predict req/s | vs off | P50 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    base = r["figures"]["off"]["predict_rps"]
    for name in ("off", "log", "log+feedback"):
        s = r["figures"][name]
        lines.append(
            f"| {name} | {s['rps']:.0f} | {s['predict_rps']:.0f} | {s['predict_rps'] / base:.3f}x"
            f" | {s['p50']:.2f} | {s['p99']:.1f} | {s['errors']} |"
        )
    lines += [
        "",
        "Predict req/s over `off`'s, round by round (the target reads their median): "
        + "; ".join(
            f"{name}: "
            + ", ".join(f"{x:.3f}" for x in r["ratios_per_round"][name])
            + f" (median {r['ratios_median_round'][name]:.3f})"
            for name in r["ratios_per_round"]
        ),
    ]
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for t in r["targets"].values():
        value = t["value"] if isinstance(t["value"], int) else f"{t['value']:.3f}"
        lines.append(f"| {t['target']} | {value} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.logging_cost", description=__doc__)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=32.0, help="seconds per load, all rounds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--out", type=Path, default=get_settings().reports_dir / "bench")
    args = p.parse_args(argv)
    try:
        tag = resolve_tag(get_settings())
        wrk_path()
    except (NoModelError, WrkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = bench(tag, args.clients, args.duration, args.warmup, args.rounds, args.out)
    (args.out / "logging.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "logging.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
