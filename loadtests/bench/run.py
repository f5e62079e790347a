"""`make bench`: our service vs plain FastAPI vs BentoML's floor, under the same load, in one run.

Each server is pinned to core 0, the load generator (Locust, closed loop) to core 1. For each
concurrency the run warms up, then measures; figures come from exact per-request samples. Results
are relative first: ratios to the FastAPI baseline and to the framework floor hold on a noisy
machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from core.process import Server
from core.settings import ROOT, get_settings
from loadtests import traffic
from loadtests.locust_run import Load, run_locust, summarize
from serving.runtime import NoModelError, resolve_tag

PIN_SERVER = ("taskset", "-c", "0")
LOAD_CPU = 1
UVICORN = str(Path(sys.executable).with_name("uvicorn"))

SERVERS: dict[str, dict] = {
    "bentogate": {"target": "service:Predictor"},
    "fastapi": {
        "target": "fastapi",
        "command": (
            UVICORN,
            "loadtests.bench.fastapi_app:app",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ),
    },
    "floor": {"target": "loadtests.bench.floor_service:Floor"},
    "two_services": {"target": "loadtests.bench.two_services:Preprocess"},
}
TARGETS = {  # from the issue: (description, check)
    "rps_32": (
        "bentogate >= 400 req/s at 32 clients",
        lambda r: r["bentogate"]["32"]["rps"] >= 400,
    ),
    "x_fastapi_32": (
        "bentogate >= 5x FastAPI req/s at 32",
        lambda r: r["ratios"]["32"]["rps_vs_fastapi"] >= 5,
    ),
    "x_floor_32": (
        "bentogate >= 0.8x floor req/s at 32",
        lambda r: r["ratios"]["32"]["rps_vs_floor"] >= 0.8,
    ),
    "p90_32": ("bentogate P90 <= 120 ms at 32", lambda r: r["bentogate"]["32"]["p90"] <= 120),
    "errors": (
        "bentogate no errors",
        lambda r: all(r["bentogate"][c]["error_rate"] == 0 for c in r["concurrency"]),
    ),
    "p50_1": ("bentogate P50 <= 4 ms at 1 client", lambda r: r["bentogate"]["1"]["p50"] <= 4),
    "cold_start": (
        "bentogate cold start to ready <= 5 s",
        lambda r: r["bentogate"]["cold_start_s"] <= 5,
    ),
    "memory": ("bentogate memory <= 300 MB per replica", lambda r: r["bentogate"]["rss_mb"] <= 300),
}


def bench(tag: str, concurrency: list[int], duration: float, warmup: float, out: Path) -> dict:
    schema, valid = traffic.held_out(tag)
    bodies = traffic.write_bodies(
        out / "bodies.jsonl", traffic.bodies(traffic.records(schema, valid), 2000, 0.0, 1)
    )
    results: dict = {
        "model": tag,
        "concurrency": [str(c) for c in concurrency],
        "duration_s": duration,
        "warmup_s": warmup,
    }
    env = {"BENTOGATE_MODEL_TAG": tag, "BENTOGATE_PREDICTION_LOG": str(out / "predictions.jsonl")}
    for name, spec in SERVERS.items():
        server = Server(
            spec["target"],
            command=spec.get("command"),
            prefix=PIN_SERVER,
            cwd=ROOT,
            env=env,
            log_path=out / f"{name}_server.log",
        )
        print(f"[bench] {name}: starting", file=sys.stderr)
        server.start()
        try:
            entry: dict = {"cold_start_s": server.wait_ready(90)}
            for c in concurrency:
                load = Load(users=c, spawn_rate=c, duration_s=duration, warmup_s=warmup)
                samples = run_locust(server.url, bodies, load, out, f"{name}_c{c}", cpu=LOAD_CPU)
                entry[str(c)] = summarize(samples, duration)
                s = entry[str(c)]
                print(
                    f"[bench] {name} c={c}: {s['rps']:.0f} req/s, p50 {s['p50']:.1f} ms, "
                    f"p90 {s['p90']:.1f} ms, p99 {s['p99']:.1f} ms, errors {s['error_rate']:.2%}",
                    file=sys.stderr,
                )
            entry["rss_mb"] = server.rss_bytes() / 2**20
        finally:
            server.stop()
        if name == "bentogate":
            # A model registered before a runtime format change serves through scikit-learn
            # (~10x slower): say so rather than publish its figures unlabelled.
            log = (out / f"{name}_server.log").read_text(errors="replace")
            found = re.search(r"loaded \(runtime: (\w+)\)", log)
            entry["predictor"] = found.group(1) if found else "unknown"
            if entry["predictor"] == "sklearn":
                print(
                    "[bench] bentogate served the scikit-learn model, not a faster runtime: "
                    "see `make models` for why it was refused",
                    file=sys.stderr,
                )
        results[name] = entry
        time.sleep(1)
    results["ratios"] = {
        str(c): {
            "rps_vs_fastapi": results["bentogate"][str(c)]["rps"]
            / results["fastapi"][str(c)]["rps"],
            "rps_vs_floor": results["bentogate"][str(c)]["rps"] / results["floor"][str(c)]["rps"],
            "p90_vs_fastapi": results["bentogate"][str(c)]["p90"]
            / results["fastapi"][str(c)]["p90"],
        }
        for c in concurrency
    }
    results["targets"] = {
        k: {"target": d, "met": bool(check(results))}
        for k, (d, check) in TARGETS.items()
        if all(str(c) in results["concurrency"] for c in ("1", "32"))
        or k in ("cold_start", "memory")
    }
    return results


def markdown(r: dict) -> str:
    lines = [
        f"### Benchmark: `{r['model']}`, {r['bentogate'].get('predictor', '?')} predictor "
        f"({r['duration_s']:.0f} s per point, closed loop, server on core 0, Locust on core 1)",
        "",
        "| server | clients | req/s | P50 ms | P90 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SERVERS:
        for c in r["concurrency"]:
            s = r[name][c]
            lines.append(
                f"| {name} | {c} | {s['rps']:.0f} | {s['p50']:.1f} | {s['p90']:.1f} | "
                f"{s['p99']:.1f} | {s['error_rate']:.2%} |"
            )
    lines += [
        "",
        "| clients | req/s vs FastAPI | req/s vs floor | P90 vs FastAPI |",
        "|---|---|---|---|",
    ]
    for c, x in r["ratios"].items():
        lines.append(
            f"| {c} | {x['rps_vs_fastapi']:.2f}x | {x['rps_vs_floor']:.2f}x "
            f"| {x['p90_vs_fastapi']:.2f}x |"
        )
    lines += ["", "| server | cold start to ready | memory (RSS, all processes) |", "|---|---|---|"]
    lines += [f"| {n} | {r[n]['cold_start_s']:.1f} s | {r[n]['rss_mb']:.0f} MB |" for n in SERVERS]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [
        f"| {t['target']} | {'yes' if t['met'] else '**no**'} |" for t in r["targets"].values()
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.run", description=__doc__)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=get_settings().reports_dir / "bench")
    args = p.parse_args(argv)
    try:
        tag = resolve_tag(get_settings())
    except NoModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = bench(
        tag, [int(c) for c in args.concurrency.split(",")], args.duration, args.warmup, args.out
    )
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    (args.out / "bench.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
