"""`make bench-logging` (also part of `make bench`): what the prediction log and a feedback stream
cost the predict throughput, in one run (issue 13: at most 5% at 32 clients).

Three copies of our service are up for the whole run, all pinned to core 0 (wrk on core 1):

- `off`: both logs `off`: the baseline;
- `log`: writing the prediction and actuals logs to files, as a deploy does; predicts only;
- `log+feedback`: the same, with one POST /feedback of FEEDBACK_ITEMS actuals every EVERY
  requests (one actual per ~10 predictions), as systems that observe outcomes send them.

In each round the three are loaded *at the same time*, 32 connections each, so they share core 0
and whatever else the machine is doing in the same seconds: a paired measurement. Taking turns
instead (one server loaded after another) read the noise of a shared machine as a cost: two
identical servers (both logs off) differed by 4-7% that way, and rounds spread from 0.68x to
1.01x. Where a server stands in the start order matters too: on a busy machine the one started
first read 3-10% slower than the last in a control run, whatever it ran. So the rounds are run
in six sessions, one per order (every load in every place equally often; servers restarted
between sessions).

The figure is each server's CPU time per predict (all its processes, from /proc/<pid>/stat;
feedback handling is charged to the predicts) over the baseline's, round by round, averaged
geometrically over the rounds. A server saturated by its load is CPU-bound, so its throughput is
1 / CPU per predict: the ratio is the throughput ratio. `--same` runs the control: every server
with its logs off, which must read ~1.0x. Report: reports/bench/logging.{json,md}.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import statistics
import sys
import threading
from pathlib import Path

from core import cli
from core.process import Server
from core.settings import ROOT, get_settings
from loadtests import traffic
from loadtests.bench.run import LOAD_CPU, PIN_SERVER, SERVER_CPU, _settle
from loadtests.bench.wrk import MIX_SCRIPT, WrkError, pool, run_wrk, wrk_path
from serving.runtime import NoModelError, resolve_tag

EVERY = 100  # one feedback request per EVERY requests...
FEEDBACK_ITEMS = 10  # ... carrying this many actuals: ~1 actual per 10 predictions
TARGET = 0.95
LOADS = ("off", "log", "log+feedback")
# One session per start order: the place in it is worth several percent (docstring above).
ORDERS = list(itertools.permutations(LOADS))
SHARE = {"off": 1.0, "log": 1.0, "log+feedback": (EVERY - 1) / EVERY}  # predicts per request


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of `root` and its descendants, from /proc."""
    kids: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            stats[pid] = fields
            kids.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        if pid in stats:  # fields after ")": state is [0]; utime [11], stime [12]
            total += int(stats[pid][11]) + int(stats[pid][12])
    return total / os.sysconf("SC_CLK_TCK")


def load_all(
    servers: dict[str, Server],
    order: tuple[str, ...],
    body: Path,
    env: dict[str, dict[str, str] | None],
    clients: int,
    seconds: float,
) -> dict[str, dict]:
    """All loads at once, started in `order`, for `seconds`: each one's wrk figures and its
    server's CPU time and predicts."""
    pids = {name: servers[name].proc.pid for name in order}  # type: ignore[union-attr]
    found: dict[str, dict] = {}
    failed: list[BaseException] = []

    def one(name: str) -> None:
        try:
            found[name] = run_wrk(
                f"{servers[name].url}/predict",
                body,
                clients,
                seconds,
                cpu=LOAD_CPU,
                script=MIX_SCRIPT,
                env=env[name],
            )
        except BaseException as exc:  # re-raised below, in the bench's thread
            failed.append(exc)

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    threads = [threading.Thread(target=one, args=(name,)) for name in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    for name, pid in pids.items():
        found[name]["cpu_s"] = cpu_seconds(pid) - cpu0[name]
        found[name]["predicts"] = found[name]["requests"] * SHARE[name]
    return found


def bench(
    tag: str,
    clients: int,
    duration: float,
    warmup: float,
    rounds: int,
    out: Path,
    same: bool = False,
) -> dict:
    schema, _ = traffic.held_out(tag)
    body = out / "logging_body.json"
    body.write_text(json.dumps({"records": [schema.example_record()]}))
    feedback = out / "logging_feedback.json"
    actuals = [{"request_id": f"bench-{i}", "actual": 1.5} for i in range(FEEDBACK_ITEMS)]
    feedback.write_text(json.dumps({"actuals": actuals}))
    logs = out / "logging"
    off = {"BENTOGATE_PREDICTION_LOG": "off", "BENTOGATE_ACTUALS_LOG": "off"}
    variants: dict[str, dict[str, str]] = {"off": off}
    for name in LOADS[1:]:
        folder = logs / name.replace("+", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jsonl*"):
            old.unlink()
        variants[name] = (
            off
            if same
            else {
                "BENTOGATE_PREDICTION_LOG": str(folder / "predictions.jsonl"),
                "BENTOGATE_ACTUALS_LOG": str(folder / "actuals.jsonl"),
            }
        )
    mix = {"BENTOGATE_WRK_EVERY": str(EVERY), "BENTOGATE_WRK_FEEDBACK": str(feedback)}
    env: dict[str, dict[str, str] | None] = {"off": None, "log": None, "log+feedback": mix}
    runs: dict[str, list[dict]] = {name: [] for name in LOADS}
    for session, order in enumerate(ORDERS):
        servers: dict[str, Server] = {}
        try:
            for name in order:
                server = servers[name] = Server(
                    "service:Predictor",
                    prefix=PIN_SERVER,
                    cwd=ROOT,
                    env={"BENTOGATE_MODEL_TAG": tag, **variants[name]},
                    log_path=out / f"logging_{name.replace('+', '-')}_server.log",
                )
                print(f"[bench-logging] session {session + 1}: starting {name}", file=sys.stderr)
                server.start()
                server.wait_ready(90)
            load_all(servers, order, body, env, clients, warmup)  # not recorded
            for _ in range(rounds // len(ORDERS)):
                _settle(SERVER_CPU)
                for name, run in load_all(
                    servers, order, body, env, clients, duration / rounds
                ).items():
                    runs[name].append(run)
        finally:
            for server in servers.values():
                server.stop()
    figures: dict[str, dict] = {}
    for name in LOADS:
        f = figures[name] = pool(runs[name])
        f["predict_rps"] = f["rps"] * SHARE[name]
        predicts = sum(x["predicts"] for x in runs[name])
        f["cpu_us_per_predict"] = 1e6 * sum(x["cpu_s"] for x in runs[name]) / max(predicts, 1)

    def per_round(name: str, key: str) -> list[float]:
        out = []
        for a, b in zip(runs[name], runs["off"], strict=True):
            if key == "rps":  # predict req/s over the baseline's
                out.append((a["predicts"] / a["duration_us"]) / (b["predicts"] / b["duration_us"]))
            else:  # the baseline's CPU per predict over this load's: the throughput ratio
                out.append((b["cpu_s"] / b["predicts"]) / (a["cpu_s"] / a["predicts"]))
        return out

    ratios = {key: {name: per_round(name, key) for name in LOADS[1:]} for key in ("rps", "cpu")}
    means = {
        key: {name: statistics.geometric_mean(v) for name, v in by.items()}
        for key, by in ratios.items()
    }
    logged = sum(
        sum(1 for _ in p.open()) for p in logs.glob("*/predictions.jsonl*") if p.suffix != ".lock"
    )
    value = means["cpu"]["log+feedback"]
    return {
        "model": tag,
        "date": dt.date.today().isoformat(),
        "clients": clients,
        "control": same,
        "duration_s": duration,
        "rounds": rounds,
        "feedback": {"every": EVERY, "actuals_per_request": FEEDBACK_ITEMS},
        "figures": figures,
        "ratios_per_round": ratios,
        "ratios_geometric_mean": means,
        "lines_logged": logged,
        "targets": {
            "logging_and_feedback_32": {
                "target": f"predict throughput with log and feedback >= {TARGET:.0%} of without"
                " (geometric mean of the rounds, CPU per predict)",
                "value": value,
                "met": value >= TARGET,
            },
            "errors": {
                "target": "no errors",
                "value": sum(figures[n]["errors"] for n in LOADS),
                "met": all(figures[n]["errors"] == 0 for n in LOADS),
            },
        },
    }


def markdown(r: dict) -> str:
    f = r["feedback"]
    lines = [
        f"### Logging cost: `{r['model']}`, {r['clients']} clients each ({r['date']})"
        + (" - CONTROL RUN: every server with its logs off" if r["control"] else ""),
        "",
        f"wrk, keep-alive; {r['duration_s']:g} s in {r['rounds']} rounds ({len(ORDERS)} sessions, one per "
        "order of starting the servers), the three servers "
        "loaded at the same time in each (all on core 0, wrk on core 1: latencies are those of "
        "a core shared three ways). `log+feedback`: one POST /feedback of "
        f"{f['actuals_per_request']} actuals every {f['every']} requests.",
        "",
        "| load | req/s | predict req/s | vs off (geometric mean) | server CPU us per predict "
        "| vs off (geometric mean) | P50 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    mean = r["ratios_geometric_mean"]
    for name in LOADS:
        s = r["figures"][name]
        rps_x = f"{mean['rps'][name]:.3f}x" if name in mean["rps"] else "1"
        cpu_x = f"{mean['cpu'][name]:.3f}x" if name in mean["cpu"] else "1"
        lines.append(
            f"| {name} | {s['rps']:.0f} | {s['predict_rps']:.0f} | {rps_x} | "
            f"{s['cpu_us_per_predict']:.0f} | {cpu_x} | {s['p50']:.2f} | {s['p99']:.1f} |"
            f" {s['errors']} |"
        )
    lines += ["", "Round by round, over `off`:", ""]
    for key, title in (("rps", "predict req/s"), ("cpu", "throughput from CPU per predict")):
        for name, values in r["ratios_per_round"][key].items():
            lines.append(f"- {name}, {title}: " + ", ".join(f"{x:.3f}" for x in values))
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for t in r["targets"].values():
        value = t["value"] if isinstance(t["value"], int) else f"{t['value']:.3f}"
        lines.append(f"| {t['target']} | {value} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m loadtests.bench.logging_cost", description=__doc__)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=36.0, help="seconds per load, all rounds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=12, help="a multiple of 6: rounds per order")
    p.add_argument("--out", type=Path, default=get_settings().reports_dir / "bench")
    p.add_argument(
        "--same", action="store_true", help="control run: every server with its logs off (~1.0x)"
    )
    args = p.parse_args(argv)
    if args.rounds < len(ORDERS) or args.rounds % len(ORDERS):
        p.error(
            f"--rounds: {args.rounds} is not a multiple of {len(ORDERS)} (one session per start order)"
        )
    try:
        tag = resolve_tag(get_settings())
        wrk_path()
    except (NoModelError, WrkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = bench(tag, args.clients, args.duration, args.warmup, args.rounds, args.out, args.same)
    (args.out / "logging.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (args.out / "logging.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
