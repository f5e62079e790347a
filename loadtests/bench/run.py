"""`make bench`: our service vs BentoML's floor vs plain FastAPI, under the same load, in one run.

Every server is pinned to core 0, the load generator to core 1; all are up for the whole run, and
each point is measured in rounds that load them in turn (each leading once, each once core 0 is
idle again), its percentiles the median round's: a change in the machine's background load falls
on all of them alike, and a burst in one round does not move the figures. The reference load is wrk: a closed loop of N keep-alive connections posting
the OpenAPI example body, after a warm-up. wrk corrects its percentiles for coordinated omission,
so a pause of the server's event loop counts as a steady stream of clients would feel it, not
once. `--locust` adds Locust's figures (exact per-request samples over held-out bodies) beside
wrk's. Results are relative first: ratios to the framework floor (the same BentoML service
settings, no model) hold on a noisy machine where absolute figures do not. `--baseline DIR` also
serves the service and floor of another checkout (e.g. the commit before a change) in the same
run, for before/after figures.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core import cli
from core.process import Server
from core.settings import ROOT, get_settings
from loadtests import traffic
from loadtests.bench.wrk import WrkError, pool, run_wrk, wrk_path
from loadtests.locust_run import Load, run_locust, summarize
from serving.runtime import NoModelError, resolve_tag

SERVER_CPU = 0
PIN_SERVER = ("taskset", "-c", str(SERVER_CPU))
LOAD_CPU = 1
UVICORN = str(Path(sys.executable).with_name("uvicorn"))

SERVERS: dict[str, dict] = {
    "bentogate": {"target": "service:Predictor"},
    "floor": {"target": "loadtests.bench.floor_service:Floor"},
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
    "two_services": {"target": "loadtests.bench.two_services:Preprocess"},
}
BASELINE = ("bentogate", "floor")  # served again from --baseline DIR, as "<name>@baseline"


def _at(r: dict, name: str, clients: int) -> dict:
    return r[name][str(clients)]


def _x(r: dict, clients: int, key: str) -> float:
    return r["ratios"][str(clients)][key]


TARGETS: dict[str, tuple[str, Callable[[dict], bool]]] = {  # (description, check), wrk figures
    "rps_32": (
        "bentogate >= 400 req/s at 32 clients",
        lambda r: _at(r, "bentogate", 32)["rps"] >= 400,
    ),
    "x_fastapi_32": (
        "bentogate >= 5x FastAPI req/s at 32",
        lambda r: _x(r, 32, "rps_vs_fastapi") >= 5,
    ),
    # Issue 16: the tail under concurrency, relative to the floor in the same run.
    "x_floor_32": (
        "bentogate >= 0.9x floor req/s at 32",
        lambda r: _x(r, 32, "rps_vs_floor") >= 0.9,
    ),
    "p90_floor_32": (
        "bentogate P90 <= 1.25x floor's at 32",
        lambda r: _x(r, 32, "p90_vs_floor") <= 1.25,
    ),
    "p99_floor_32": (
        "bentogate P99 <= 1.5x floor's at 32",
        lambda r: _x(r, 32, "p99_vs_floor") <= 1.5,
    ),
    "errors_32": ("bentogate no errors at 32", lambda r: _at(r, "bentogate", 32)["errors"] == 0),
    "errors_128": ("bentogate no errors at 128", lambda r: _at(r, "bentogate", 128)["errors"] == 0),
    "p99_floor_128": (
        "bentogate P99 <= 1.5x floor's at 128",
        lambda r: _x(r, 128, "p99_vs_floor") <= 1.5,
    ),
    "p50_1": (
        "bentogate P50 <= 1 ms at 1 client",
        lambda r: _at(r, "bentogate", 1)["p50"] <= 1,
    ),
    "p50_1_baseline": (  # evaluated when --baseline serves the checkout before a change
        "bentogate P50 at 1 client unchanged or better than the baseline's (within 5%)",
        lambda r: _at(r, "bentogate", 1)["p50"] <= 1.05 * _at(r, "bentogate@baseline", 1)["p50"],
    ),
    "p90_32": ("bentogate P90 <= 120 ms at 32", lambda r: _at(r, "bentogate", 32)["p90"] <= 120),
    "cold_start": (
        "bentogate cold start to ready <= 5 s",
        lambda r: r["bentogate"]["cold_start_s"] <= 5,
    ),
    "memory": ("bentogate memory <= 300 MB per replica", lambda r: r["bentogate"]["rss_mb"] <= 300),
}


def _cpu_times(cpu: int) -> tuple[int, int]:
    """(idle, total) jiffies of one core, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(x) for x in line.split()[1:]]
            return ticks[3] + ticks[4], sum(ticks)
    return 0, 0


def _settle(cpu: int, busy_below: float = 0.1, timeout_s: float = 10.0) -> None:
    """Wait (at most timeout_s) until `cpu` is busy less than busy_below of a 0.25 s window."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        idle0, total0 = _cpu_times(cpu)
        time.sleep(0.25)
        idle1, total1 = _cpu_times(cpu)
        if total1 == total0 or 1 - (idle1 - idle0) / (total1 - total0) < busy_below:
            return


def measure_point(
    urls: dict[str, str], body: Path, clients: int, duration: float, warmup: float, rounds: int
) -> dict[str, dict[str, float]]:
    """Each server's pooled figures at `clients` connections: a warm-up each, then `rounds`
    rounds in which the servers take turns (each leads once), each round once core 0 is idle."""
    runs: dict[str, list[dict]] = {name: [] for name in urls}
    for url in urls.values():
        run_wrk(url, body, clients, warmup, cpu=LOAD_CPU)  # not recorded
    order = list(urls)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            # A server that shed or queued work (FastAPI's thread pool, the two services' batch
            # queue) keeps core 0 busy after wrk stops: wait until it is idle.
            _settle(SERVER_CPU)
            runs[name].append(run_wrk(urls[name], body, clients, duration / rounds, cpu=LOAD_CPU))
    return {name: pool(r) for name, r in runs.items()}


def measure_servers(
    servers: dict[str, Server],
    body: Path,
    concurrency: list[int],
    duration: float,
    warmup: float,
    rounds: int,
    results: dict,
    label: str,
) -> None:
    """measure_point at each concurrency: results[name][str(c)], and a line each on stderr."""
    for c in concurrency:
        point = measure_point(
            {n: f"{v.url}/predict" for n, v in servers.items()}, body, c, duration, warmup, rounds
        )
        for name in servers:
            s = results[name][str(c)] = point[name]
            print(
                f"{label} {name} c={c}: {s['rps']:.0f} req/s, p50 {s['p50']:.2f} ms, "
                f"p90 {s['p90']:.1f} ms, p99 {s['p99']:.1f} ms, errors {s['errors']}",
                file=sys.stderr,
            )


def _ratios(r: dict, clients: list[int], suffix: str = "") -> dict:
    """bentogate's figures over the floor's and FastAPI's; suffix "@baseline": the baseline pair."""
    out = {}
    for c in clients:
        ours, floor = _at(r, f"bentogate{suffix}", c), _at(r, f"floor{suffix}", c)
        out[str(c)] = {
            "rps_vs_floor": ours["rps"] / floor["rps"],
            "p50_vs_floor": ours["p50"] / floor["p50"],
            "p90_vs_floor": ours["p90"] / floor["p90"],
            "p99_vs_floor": ours["p99"] / floor["p99"],
            "rps_vs_fastapi": ours["rps"] / _at(r, "fastapi", c)["rps"],
            "p90_vs_fastapi": ours["p90"] / _at(r, "fastapi", c)["p90"],
        }
    return out


def _targets(r: dict) -> dict:
    out = {}
    for key, (description, check) in TARGETS.items():
        try:
            met = bool(check(r))
        except KeyError:  # a concurrency this run did not measure
            continue
        out[key] = {"target": description, "met": met}
    return out


def bench(
    tag: str,
    concurrency: list[int],
    duration: float,
    warmup: float,
    out: Path,
    rounds: int = 4,
    locust: bool = False,
    baseline: Path | None = None,
) -> dict:
    schema, valid = traffic.held_out(tag)
    body = out / "body.json"  # the OpenAPI example of the request schema, as wrk posts it
    body.write_text(json.dumps({"records": [schema.example_record()]}))
    bodies = traffic.write_bodies(
        out / "bodies.jsonl", traffic.bodies(traffic.records(schema, valid), 2000, 0.0, 1)
    )
    results: dict = {
        "model": tag,
        "load": "wrk, closed loop, keep-alive connections",
        "concurrency": [str(c) for c in concurrency],
        "duration_s": duration,
        "rounds": rounds,
        "warmup_s": warmup,
    }
    specs = [(name, spec, ROOT) for name, spec in SERVERS.items()]
    if baseline is not None:
        specs[2:2] = [(f"{n}@baseline", SERVERS[n], baseline.resolve()) for n in BASELINE]
    env = {"BENTOGATE_MODEL_TAG": tag, "BENTOGATE_PREDICTION_LOG": str(out / "predictions.jsonl")}
    # Every server is up for the whole run, idle but the one under load.
    servers: dict[str, Server] = {}
    try:
        for name, spec, cwd in specs:
            log = out / f"{name}_server.log"
            log.unlink(missing_ok=True)
            server = servers[name] = Server(
                spec["target"],
                command=spec.get("command"),
                prefix=PIN_SERVER,
                cwd=cwd,
                env=env,
                log_path=log,
            )
            print(f"[bench] {name}: starting", file=sys.stderr)
            server.start()
            results[name] = {"cold_start_s": server.wait_ready(90)}
        measure_servers(servers, body, concurrency, duration, warmup, rounds, results, "[bench]")
        for name, server in servers.items():
            results[name]["rss_mb"] = server.rss_bytes() / 2**20
        if locust:
            for c in concurrency:
                for name, server in servers.items():
                    load = Load(users=c, spawn_rate=c, duration_s=duration, warmup_s=warmup)
                    samples = run_locust(
                        server.url, bodies, load, out, f"{name}_c{c}", cpu=LOAD_CPU
                    )
                    results[name].setdefault("locust", {})[str(c)] = summarize(samples, duration)
    finally:
        for server in servers.values():
            server.stop()
    # A model registered before a runtime format change serves through scikit-learn (~10x
    # slower): say so rather than publish its figures unlabelled.
    log_text = (out / "bentogate_server.log").read_text(errors="replace")
    found = re.search(r"loaded \(runtime: (\w+)\)", log_text)
    predictor = found.group(1) if found else "unknown"
    results["bentogate"]["predictor"] = predictor
    if predictor == "sklearn":
        print(
            "[bench] bentogate served the scikit-learn model, not a faster runtime: "
            "see `make models` for why it was refused",
            file=sys.stderr,
        )
    results["ratios"] = _ratios(results, concurrency)
    if baseline is not None:
        results["ratios@baseline"] = _ratios(results, concurrency, "@baseline")
    results["targets"] = _targets(results)
    return results


def markdown(r: dict) -> str:
    names = [n for n in r if isinstance(r[n], dict) and "cold_start_s" in r[n]]
    lines = [
        f"### Benchmark: `{r['model']}`, {r['bentogate'].get('predictor', '?')} predictor "
        f"({r['load']}, {r['duration_s']:.0f} s per point in {r['rounds']} rounds alternating "
        f"between servers (median round), after {r['warmup_s']:.0f} s of warm-up; servers on core 0, wrk on "
        "core 1)",
        "",
        "| server | clients | req/s | P50 ms | P90 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for c in r["concurrency"]:
            s = r[name][c]
            lines.append(
                f"| {name} | {c} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p90']:.1f} | "
                f"{s['p99']:.1f} | {s['errors']} |"
            )
    for key, title in (("ratios", "bentogate"), ("ratios@baseline", "bentogate@baseline")):
        if key not in r:
            continue
        lines += [
            "",
            f"| {title}: clients | req/s vs floor | P50 vs floor | P90 vs floor | P99 vs floor "
            "| req/s vs FastAPI | P90 vs FastAPI |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, x in r[key].items():
            lines.append(
                f"| {c} | {x['rps_vs_floor']:.2f}x | {x['p50_vs_floor']:.2f}x | "
                f"{x['p90_vs_floor']:.2f}x | {x['p99_vs_floor']:.2f}x | "
                f"{x['rps_vs_fastapi']:.2f}x | {x['p90_vs_fastapi']:.2f}x |"
            )
    if any("locust" in r[n] for n in names):
        lines += [
            "",
            "Locust (held-out bodies, exact samples):",
            "",
            "| server | clients | req/s | P50 ms | P90 ms | P99 ms | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in names:
            for c, s in r[name].get("locust", {}).items():
                lines.append(
                    f"| {name} | {c} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p90']:.1f} | "
                    f"{s['p99']:.1f} | {s['error_rate']:.2%} |"
                )
    lines += ["", "| server | cold start to ready | memory (RSS, all processes) |", "|---|---|---|"]
    lines += [f"| {n} | {r[n]['cold_start_s']:.1f} s | {r[n]['rss_mb']:.0f} MB |" for n in names]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [
        f"| {t['target']} | {'yes' if t['met'] else '**no**'} |" for t in r["targets"].values()
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m loadtests.bench.run", description=__doc__)
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per point, all rounds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=4, help="rounds per point, alternating servers")
    p.add_argument(
        "--locust", action="store_true", help="also measure with Locust (doubles the time)"
    )
    p.add_argument(
        "--baseline", type=Path, help="also serve bentogate and floor from this checkout"
    )
    p.add_argument("--out", type=Path, default=get_settings().reports_dir / "bench")
    args = p.parse_args(argv)
    try:
        tag = resolve_tag(get_settings())
        wrk_path()
    except (NoModelError, WrkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = bench(
        tag,
        [int(c) for c in args.concurrency.split(",")],
        args.duration,
        args.warmup,
        args.out,
        rounds=args.rounds,
        locust=args.locust,
        baseline=args.baseline,
    )
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    (args.out / "bench.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
