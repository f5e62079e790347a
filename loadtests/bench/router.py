"""`make bench-router`: what the local target's router (nginx) costs. The last build is deployed
in a scratch directory on free ports (router, supervisor and one release, as `make deploy` runs
them), then wrk drives the release directly and through the stable address in turn, at 1 and 32
clients, with the release pinned to core 0 and wrk and nginx to core 1; then a second release is
made stable and slow on purpose, and the previous one answers within the budget (`fallback`).
Targets (issue 12): through the router >= 0.9x the release's req/s at 32 clients with 0 errors;
<= 0.5 ms added to P50 at 1 client; with the stable release late, P99 <= budget + 20 ms and 0
errors. Report: reports/bench/router.{json,md}.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx

from core import cli
from core.process import free_port
from core.settings import ROOT, get_settings
from deploy import config
from deploy.__main__ import _bento
from deploy.local import LocalTarget, UsageError
from loadtests.bench.wrk import pool
from loadtests.bench.wrk import run_wrk as _run_wrk

RELEASE_CPU, LOAD_CPU = 0, 1
FALLBACK_BUDGET_MS = 200  # the stable route's budget in the fallback phase
FALLBACK_CLIENTS = 8


def run_wrk(url: str, body: Path, clients: int, duration: float, cpu: int | None) -> dict:
    """One wrk run as figures: req/s, P50/P90/P99/max in ms, errors."""
    return pool([_run_wrk(url, body, clients, duration, cpu=cpu)])


def fallback(target: LocalTarget, bento: str, model_tag: str, body: Path, duration: float) -> dict:
    """Better wrong than late, measured: a second release of the Bento becomes stable with a
    budget of FALLBACK_BUDGET_MS (the sustained-miss pin off), then is made slow on purpose (its workers stopped with
    SIGSTOP: it accepts connections and never answers), and wrk drives the stable address. The
    previous release answers; what clients see is bounded by the budget (target: P99 <= budget
    + 20 ms, 0 errors)."""
    env = config.load(get_settings().deploy_config).env("staging", "local")
    assert env.local is not None
    # The request-by-request fallback alone: the supervisor's sustained-miss pin (which would
    # send everything to the previous release after a few seconds) is off here.
    never = env.local.router.sustained_miss.model_copy(update={"max_share": None})
    router = env.local.router.model_copy(
        update={"budget_ms": FALLBACK_BUDGET_MS, "sustained_miss": never}
    )
    env = env.model_copy(update={"local": env.local.model_copy(update={"router": router})})
    budgeted = LocalTarget(
        target.env_name,
        env,
        target.dir.parents[1],
        target.model,
        port=target.port,
        log=lambda _: None,
    )
    stable = budgeted.deploy(bento, model_tag)
    state = json.loads((target.dir / "supervisor.json").read_text())
    workers = _tree(state["releases"][stable.id]["pid"])[1:]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        figures = run_wrk(f"{target.url}/predict", body, FALLBACK_CLIENTS, duration, LOAD_CPU)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    lines = (target.dir / "nginx" / "logs" / "access.log").read_text().splitlines()[-20000:]
    late = [
        x
        for x in map(json.loads, lines)
        if x.get("routed_to") == stable.id and x.get("answered_by") != stable.id
    ]
    failed = Counter(
        str(x.get("status"))
        for x in map(json.loads, lines)
        if x.get("routed_to") == stable.id and int(x.get("status", 0)) != 200
    )
    answered = Counter(
        x.get("answered_by") for x in map(json.loads, lines) if x.get("routed_to") == stable.id
    )
    figures.update(
        answered_by=dict(answered),
        failed_statuses=dict(failed),
        budget_ms=FALLBACK_BUDGET_MS,
        clients=FALLBACK_CLIENTS,
        answered_by_previous=len(late),
        waited_the_budget=sum(
            1 for x in late if str(x.get("upstream_status", "")).startswith("504")
        ),
    )
    print(
        f"[bench-router] fallback c={FALLBACK_CLIENTS}, stable stopped, budget"
        f" {FALLBACK_BUDGET_MS} ms: {figures['rps']:.0f} req/s, p99 {figures['p99']:.1f} ms,"
        f" max {figures['max']:.1f} ms, errors {figures['errors']}",
        file=sys.stderr,
    )
    return figures


def _pin(pids: list[int], cpu: int) -> None:
    if shutil.which("taskset"):
        for pid in pids:
            subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True)


def _tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            kids.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(stat.parent.name)
            )
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def bench(bento: str | None, duration: float, rounds: int, out: Path) -> dict:
    tag, model_tag = _bento(bento)
    settings = get_settings()
    env = config.load(settings.deploy_config).env("staging", "local")
    with tempfile.TemporaryDirectory(prefix="bench-router-") as scratch:
        target = LocalTarget(
            "staging", env, Path(scratch), model_tag.split(":")[0], port=free_port()
        )
        try:
            release = target.deploy(tag, model_tag)
            state = json.loads((target.dir / "supervisor.json").read_text())
            _pin(_tree(state["releases"][release.id]["pid"]), RELEASE_CPU)
            _pin(_tree(state["router"]["pid"]), LOAD_CPU)
            schema_body = out / "router_body.json"
            spec = httpx.get(f"{release.url}/docs.json").json()
            example = spec["paths"]["/predict"]["post"]["requestBody"]["content"][
                "application/json"
            ]["schema"]["example"]
            schema_body.write_text(json.dumps(example))
            urls = {"release": f"{release.url}/predict", "router": f"{target.url}/predict"}
            results: dict = {"bento": tag, "duration_s": duration, "rounds": rounds}
            for clients in (1, 32):
                for url in urls.values():  # warm-up, not recorded
                    run_wrk(url, schema_body, clients, 2, cpu=LOAD_CPU)
                # Alternate: a change in the machine's background load falls on both alike.
                runs: dict[str, list[dict]] = {"release": [], "router": []}
                for _ in range(rounds):
                    for name, url in urls.items():
                        runs[name].append(
                            run_wrk(url, schema_body, clients, duration, cpu=LOAD_CPU)
                        )
                for name, samples in runs.items():
                    best = max(samples, key=lambda s: s["rps"])
                    results.setdefault(name, {})[str(clients)] = {
                        "rps": best["rps"],
                        "p50": sorted(s["p50"] for s in samples)[len(samples) // 2],
                        "p99": best["p99"],
                        "errors": sum(int(s["errors"]) for s in samples),
                    }
                    r = results[name][str(clients)]
                    print(
                        f"[bench-router] {name} c={clients}: {r['rps']:.0f} req/s, p50"
                        f" {r['p50']:.2f} ms, p99 {r['p99']:.1f} ms, errors {r['errors']}",
                        file=sys.stderr,
                    )
            results["fallback"] = fallback(target, tag, model_tag, schema_body, duration)
        finally:
            target.down()
    ratio = results["router"]["32"]["rps"] / results["release"]["32"]["rps"]
    added = results["router"]["1"]["p50"] - results["release"]["1"]["p50"]
    results["targets"] = {
        "rps_ratio_32": {"value": ratio, "target": ">= 0.9", "met": ratio >= 0.9},
        "errors_32": {
            "value": results["router"]["32"]["errors"],
            "target": "0",
            "met": results["router"]["32"]["errors"] == 0,
        },
        "p50_added_ms_1": {"value": added, "target": "<= 0.5", "met": added <= 0.5},
    }
    fb = results["fallback"]
    bound = fb["budget_ms"] + 20
    results["targets"]["fallback_p99_ms"] = {
        "value": fb["p99"],
        "target": f"<= {bound} (budget + 20)",
        "met": fb["p99"] <= bound,
    }
    results["targets"]["fallback_errors"] = {
        "value": int(fb["errors"]),
        "target": "0",
        "met": fb["errors"] == 0,
    }
    return results


def markdown(r: dict) -> str:
    lines = [
        f"# Router benchmark ({r['bento']})",
        "",
        f"wrk, keep-alive, {r['rounds']} alternating rounds of {r['duration_s']:g} s; release on"
        " core 0, nginx and wrk on core 1. Best req/s, median P50.",
        "",
        "| path | clients | req/s | P50 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for clients in ("1", "32"):
        for name in ("release", "router"):
            s = r[name][clients]
            lines.append(
                f"| {name} | {clients} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.1f} |"
                f" {s['errors']} |"
            )
    fb = r["fallback"]
    lines += [
        "",
        f"Fallback: a second release made stable with a {fb['budget_ms']} ms budget (the"
        " sustained-miss pin off: each request on its own), then slow on"
        " purpose (its workers SIGSTOPped: connections accepted, never answered); wrk at"
        f" {fb['clients']} clients through the stable address: {fb['rps']:.0f} req/s, P50"
        f" {fb['p50']:.2f} ms, P99 {fb['p99']:.1f} ms, max {fb['max']:.1f} ms, errors"
        f" {int(fb['errors'])} (router statuses {fb.get('failed_statuses') or 'none'});"
        f" {fb['answered_by_previous']} requests answered by the previous"
        f" release, {fb['waited_the_budget']} of them after waiting the budget (nginx then takes"
        " the late release out of the route for 2 s).",
    ]
    lines += ["", "| target | value | bound | met |", "|---|---|---|---|"]
    for name, t in r["targets"].items():
        value = t["value"] if isinstance(t["value"], int) else f"{t['value']:.3f}"
        lines.append(f"| {name} | {value} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m loadtests.bench.router", description=__doc__)
    p.add_argument("bento", nargs="?", help="default: the last build")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results = bench(args.bento, args.duration, args.rounds, args.out)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (args.out / "router.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "router.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
