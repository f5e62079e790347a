"""`make loadtest`: serve the candidate Bento, drive it with Locust, gate on thresholds.

Exit codes: 0 the gate passed; 1 a threshold or the regression check failed (the message names
threshold, measured value and limit); 2 invalid config or arguments; 3 the run itself failed (a
server did not start, Locust crashed, an unexpected error with its traceback): never a pass.
Servers and Locust stop on every exit path, Ctrl-C included. On a busy machine the verdict holds
by rounds and one confirmatory re-run of a near miss (loadtests/rounds.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any, get_args

import bentoml
import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core import cli, registry, thresholds
from core.process import Server, ServerError
from core.settings import ROOT, get_settings
from core.verdict import Check, GateResult
from core.yamlconf import ConfigError, load_yaml
from loadtests import chart, rounds, traffic
from loadtests.locust_run import Load, LoadRunError, run_locust, summarize
from models.config import LoadMetric, LoadtestConfig, package_config
from serving.runtime import NoModelError, bento_model_tag, last_build, resolve_tag

EXIT_FAILED, EXIT_USAGE, EXIT_RUN_ERROR = 1, 2, 3
CONFIG = Path(__file__).with_name("config.yaml")
METRICS = set(get_args(LoadMetric))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadConfig(_Strict):
    users: int = Field(ge=1, le=1000)
    spawn_rate: float = Field(gt=0)
    rate_per_user: float = Field(gt=0, le=1000)
    duration_s: float = Field(gt=0, le=3600)
    warmup_s: float = Field(ge=0, le=600)
    workers: int = Field(default=0, ge=0, le=16)


class TrafficConfig(_Strict):
    bodies: int = Field(default=2000, ge=1)
    multi_record_share: float = Field(default=0.0, ge=0, le=1)
    multi_record_size: int = Field(default=10, ge=1)


class RegressionConfig(_Strict):
    p90_ratio: float = Field(gt=0)


class VerdictConfig(_Strict):
    """How the verdict holds on a busy machine (loadtests/rounds.py)."""

    rounds: int = Field(default=3, ge=1, le=20)
    confirm_within: float = Field(default=0.5, ge=0, le=10)


class CapacityConfig(_Strict):
    users: int = Field(default=16, ge=1)
    duration_s: float = Field(default=5, gt=0, le=600)


class GateConfig(_Strict):
    load: LoadConfig
    traffic: TrafficConfig = TrafficConfig()
    thresholds: list[str]
    regression: RegressionConfig
    verdict: VerdictConfig = VerdictConfig()
    capacity: CapacityConfig = CapacityConfig()

    @field_validator("thresholds")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for text in value:
            if (t := thresholds.parse(text)).metric not in METRICS:
                raise ValueError(f"unknown metric {t.metric!r} in {text!r}: use {sorted(METRICS)}")
        return value


def merge_thresholds(config: list[str], override: str | None) -> list[thresholds.Threshold]:
    """Config thresholds, with any metric given on the command line replaced by the override."""
    base = {t.metric: t for t in map(thresholds.parse, config)}
    for t in thresholds.parse_many(override or ""):
        if t.metric not in METRICS:
            raise thresholds.ThresholdError(f"unknown metric {t.metric!r}: use {sorted(METRICS)}")
        base[t.metric] = t
    return list(base.values())


def resolve(
    cfg: GateConfig, model: LoadtestConfig, override: str | None = None
) -> tuple[GateConfig, list[thresholds.Threshold]]:
    """Pure: the gate for one model. Its `loadtest` load and traffic keys replace those of
    loadtests/config.yaml; thresholds by metric: the global one, then the model's, then the
    command line's."""
    data = cfg.model_dump()
    for section in ("load", "traffic"):
        data[section].update(getattr(model, section).model_dump(exclude_none=True))
    try:
        merged = GateConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"the model's loadtest section: {field}: {err['msg']}") from None
    bounds = [*cfg.thresholds, *(f"{metric} {b}" for metric, b in model.thresholds.items())]
    return merged, merge_thresholds(bounds, override)


def model_loadtest(model_tag: str | None) -> LoadtestConfig:
    """The `loadtest` section of the model's config: its package's file, or the config recorded
    with the model at registration when the package is not here; none: the global gate."""
    if model_tag is None:
        return LoadtestConfig()
    try:
        recorded = registry.metadata(bentoml.models.get(model_tag)).get("config")
    except (bentoml.exceptions.NotFound, ValueError):
        recorded = None
    cfg = package_config(model_tag.split(":")[0], recorded)
    return cfg.loadtest if cfg is not None else LoadtestConfig()


def check(
    summary: dict[str, float],
    gates: list[thresholds.Threshold],
    production: dict[str, float] | None,
    p90_ratio: float,
) -> GateResult:
    """Pure: the gate's verdict on measured figures."""
    checks = []
    for t in gates:
        value = summary[t.metric]
        ok = t.holds(value)
        shown = f"{value:.3%}" if t.metric == "error_rate" else f"{value:.1f}"
        checks.append(
            Check(
                t.metric,
                value,
                t.text,
                ok,
                f"{t.metric} = {shown} {'meets' if ok else 'fails'} {t.text}",
            )
        )
    if production is not None:
        limit = p90_ratio * production["p90"]
        ok = summary["p90"] <= limit
        checks.append(
            Check(
                "p90_vs_production",
                summary["p90"],
                f"<= {limit:.1f} ms",
                ok,
                f"p90 = {summary['p90']:.1f} ms {'meets' if ok else 'fails'} <= "
                f"{p90_ratio:g} x production p90 {production['p90']:.1f} ms = {limit:.1f} ms",
            )
        )
    return GateResult(all(c.passed for c in checks), tuple(checks))


def shortfalls(
    summary: dict[str, float],
    gates: list[thresholds.Threshold],
    production: dict[str, float] | None,
    p90_ratio: float,
) -> dict[str, float]:
    """Pure: each check `check` fails, by how much relative to its bound (0.2: 20% past it)."""
    misses = {
        t.metric: rounds.relative_miss(summary[t.metric], t.value, t.lower_is_better)
        for t in gates
        if not t.holds(summary[t.metric])
    }
    if production is not None and not summary["p90"] <= (limit := p90_ratio * production["p90"]):
        misses["p90_vs_production"] = rounds.relative_miss(summary["p90"], limit, True)
    return misses


def figures_of(rounds_: list[pd.DataFrame], per_round_s: float) -> dict[str, float]:
    """One target's gated figures: each round summarized, then combined (loadtests/rounds.py)."""
    return rounds.combine([summarize(f, per_round_s) for f in rounds_])


def load_budget_s(cfg: GateConfig, targets: int) -> float:
    """Pure: the longest the gated load runs, warm-ups and a confirmatory re-run included
    (Locust's own start and the capacity probe come on top)."""
    per_attempt = targets * (cfg.load.duration_s + cfg.verdict.rounds * cfg.load.warmup_s)
    return per_attempt * (2 if cfg.verdict.confirm_within > 0 else 1)


def production_bento(candidate: str) -> str | None:
    """The newest Bento built from the current production model, unless it is the candidate's."""
    cand = bento_model_tag(candidate)
    name = cand.split(":")[0] if cand else get_settings().model
    prod = registry.production(name)
    if prod is None or str(prod.tag) == cand:
        return None
    bentos = [b for b in bentoml.bentos.list() if b.info.labels.get("model_tag") == str(prod.tag)]
    return str(max(bentos, key=lambda b: b.info.creation_time).tag) if bentos else None


def run(args: argparse.Namespace, cfg: GateConfig, gates: list[thresholds.Threshold]) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model_tag = args.model_tag
    targets = {"candidate": args.url or args.serve}
    compare = not args.url and not args.no_compare and args.cwd is None  # a Bento candidate
    if compare and (prod := production_bento(args.serve)):
        targets["production"] = prod
    schema, valid = traffic.held_out(model_tag)
    bodies = traffic.write_bodies(
        out / "bodies.jsonl",
        traffic.bodies(
            traffic.records(schema, valid),
            cfg.traffic.bodies,
            cfg.traffic.multi_record_share,
            cfg.traffic.multi_record_size,
        ),
    )

    servers: dict[str, Server] = {}
    try:
        urls = {}
        for name, target in targets.items():
            if target.startswith("http"):
                urls[name] = target
                continue
            servers[name] = Server(
                target, cwd=args.cwd or out, env=args.env, log_path=out / f"{name}_server.log"
            ).start()
        for name, server in servers.items():
            server.wait_ready(90)
            urls[name] = server.url
            print(f"[loadtest] {name}: {targets[name]} ready at {server.url}", file=sys.stderr)
        n = cfg.verdict.rounds
        per_round = cfg.load.duration_s / n
        load = Load(
            cfg.load.users,
            cfg.load.spawn_rate,
            per_round,
            cfg.load.rate_per_user,
            cfg.load.warmup_s,
            args.workers if args.workers is not None else cfg.load.workers,
        )
        print(
            f"[loadtest] {n} round(s) per target of {per_round:.1f}s measured after "
            f"{cfg.load.warmup_s:g}s of warm-up; the verdict reads the median round"
            + (
                f"; a miss within {cfg.verdict.confirm_within:.0%} of its bound is measured "
                "once more"
                if cfg.verdict.confirm_within
                else ""
            )
            + f": at most {load_budget_s(cfg, len(urls)):.0f}s of load",
            file=sys.stderr,
        )
        verdicts: list[GateResult] = []

        def measure(attempt: int) -> dict[str, list[pd.DataFrame]]:
            if attempt > 1:
                print(
                    f"[loadtest] near miss ({'; '.join(verdicts[-1].failures)}): the load test "
                    "runs once more, and fails only if this run fails too",
                    file=sys.stderr,
                )
            samples: dict[str, list[pd.DataFrame]] = {name: [] for name in urls}
            for r in range(n):
                for name, url in urls.items():
                    print(
                        f"[loadtest] {'re-run ' if attempt > 1 else ''}round {r + 1}/{n}: {name}, "
                        f"{cfg.load.users} users x {cfg.load.rate_per_user:g} req/s for "
                        f"{per_round:.1f}s",
                        file=sys.stderr,
                    )
                    label = f"{name}{'_rerun' if attempt > 1 else ''}_r{r + 1}"
                    s = run_locust(url, bodies, load, out, label)
                    samples[name].append(s.assign(round=r + 1))
            return samples

        def judge(
            samples: dict[str, list[pd.DataFrame]],
        ) -> tuple[GateResult, dict[str, float]]:
            figures = {name: figures_of(frames, per_round) for name, frames in samples.items()}
            cand, prod = figures["candidate"], figures.get("production")
            verdicts.append(check(cand, gates, prod, cfg.regression.p90_ratio))
            return verdicts[-1], shortfalls(cand, gates, prod, cfg.regression.p90_ratio)

        result, attempts = rounds.confirmed(measure, judge, cfg.verdict.confirm_within)
        capacity = summarize(
            run_locust(
                urls["candidate"],
                bodies,
                Load(cfg.capacity.users, cfg.capacity.users, cfg.capacity.duration_s, 0.0, 1.0),
                out,
                "capacity",
            ),
            cfg.capacity.duration_s,
        )
    except (ServerError, LoadRunError, httpx.HTTPError) as exc:
        print(f"error: the load test could not run: {exc}", file=sys.stderr)
        return EXIT_RUN_ERROR
    finally:
        for server in servers.values():
            server.stop()

    final = attempts[-1]
    summaries = {name: figures_of(frames, per_round) for name, frames in final.items()}
    report = {
        "targets": targets,
        "model": model_tag,
        "load": cfg.load.model_dump(),
        "verdict": cfg.verdict.model_dump(),
        "summaries": summaries,
        # Every round of every attempt; the first attempt's verdict when a re-run replaced it.
        "rounds": [
            {name: [summarize(f, per_round) for f in frames] for name, frames in attempt.items()}
            for attempt in attempts
        ],
        "first_attempt": verdicts[0].to_dict() if len(attempts) > 1 else None,
        "capacity": capacity,
        **result.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    frames = {name: pd.concat(fs, ignore_index=True) for name, fs in final.items()}
    (out / "chart.svg").write_text(chart.percentiles_svg(frames))
    md = markdown(report, summaries)
    (out / "summary.md").write_text(md)
    print(md)
    for c in result.checks:
        if not c.passed:
            print(f"FAIL {c.message}", file=sys.stderr)
    return 0 if result.accepted else EXIT_FAILED


def _model_of(bento_or_target: str) -> str:
    try:
        tag = bento_model_tag(bento_or_target)
    except (bentoml.exceptions.NotFound, ValueError):
        tag = None
    try:
        return tag or resolve_tag(get_settings())
    except NoModelError:
        raise ConfigError(
            f"cannot tell which model {bento_or_target!r} serves: pass --model-tag"
        ) from None


def markdown(report: dict[str, Any], summaries: dict[str, dict[str, float]]) -> str:
    verdict = "passed" if report["accepted"] else "FAILED"
    prod = summaries.get("production")
    n_rounds = report["verdict"]["rounds"]
    lines = [
        f"### Load test: {verdict}",
        "",
        f"Candidate `{report['targets']['candidate']}` (model `{report['model']}`)"
        + (f" vs production `{report['targets']['production']}`" if prod else "")
        + f"; {report['load']['users']} users x {report['load']['rate_per_user']:g} req/s, "
        f"open loop, {report['load']['duration_s']:g}s measured in {n_rounds} round(s): each "
        "latency figure and req/s is the median round's, errors are pooled.",
        "",
        "| check | measured | limit | production | result |",
        "|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        metric = "p90" if c["name"] == "p90_vs_production" else c["name"]
        p = prod.get(metric) if prod else None
        fmt = "{:.3%}" if metric == "error_rate" else "{:.1f}"
        lines.append(
            f"| {c['name']} | {fmt.format(c['measured'])} | {c['bound']} | "
            f"{fmt.format(p) if p is not None else '-'} | {'pass' if c['passed'] else '**FAIL**'} |"
        )
    cap = report["capacity"]
    lines += [
        "",
        f"Observed capacity (closed loop, not gated): {cap['rps']:.0f} req/s at "
        f"P90 {cap['p90']:.1f} ms.",
        "",
        "| target | requests | req/s | P50 ms | P90 ms | P99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['requests']} | {s['rps']:.1f} | {s['p50']:.1f} | "
            f"{s['p90']:.1f} | {s['p99']:.1f} | {s['error_rate']:.3%} |"
        )
    first = report.get("first_attempt")
    if first is not None:
        missed = "; ".join(c["message"] for c in first["checks"] if not c["passed"])
        lines += [
            "",
            f"The first run was a near miss ({missed}): the load test ran once more, and the "
            "figures above are the re-run's.",
        ]
    lines += ["", "| target | run | round | requests | P50 ms | P90 ms | P99 ms | errors |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for run_no, attempt in enumerate(report["rounds"], 1):
        for name, per_round in attempt.items():
            for r, s in enumerate(per_round, 1):
                lines.append(
                    f"| {name} | {run_no} | {r} | {s['requests']} | {s['p50']:.1f} | "
                    f"{s['p90']:.1f} | {s['p99']:.1f} | {s['error_rate']:.3%} |"
                )
    lines += ["", "Reports: `summary.json`, `chart.svg`, Locust HTML and CSV per round."]
    return "\n".join(lines) + "\n"


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(
        prog="python -m loadtests.gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bento", nargs="?", help="candidate Bento tag (default: the last `make build`)")
    p.add_argument("--url", help="test a running service at this URL instead (no servers started)")
    p.add_argument("--serve", help="any `bentoml serve` target (import path) instead of a Bento")
    p.add_argument(
        "--model-tag", type=cli.model_tag, help="model whose held-out data makes the traffic"
    )
    p.add_argument("--model", help="refuse a candidate that serves another model (name)")
    p.add_argument("--thresholds", help='override thresholds, e.g. "p90<20ms,error_rate<1%%"')
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument(
        "--duration",
        type=cli.number(float, 0.1, 3600),
        help="measured seconds per target (overrides config)",
    )
    p.add_argument(
        "--workers", type=cli.number(int, 0, 16), help="distributed Locust: N worker processes"
    )
    p.add_argument("--no-compare", action="store_true", help="skip the production comparison")
    p.add_argument("--out", type=Path, default=get_settings().reports_dir / "loadtest")
    args = p.parse_args(argv)
    args.env, args.cwd = {}, None
    try:
        cfg = load_yaml(args.config, GateConfig)
        if not args.url:
            if args.serve:
                args.cwd = ROOT  # an import path is served from the working tree
                if args.model_tag:
                    args.env = {"BENTOGATE_MODEL_TAG": args.model_tag}
            else:
                args.serve = args.bento or last_build()
                if not args.serve:
                    raise ConfigError("no candidate: pass a Bento tag or run `make build` first")
            args.model_tag = args.model_tag or _model_of(args.serve)
        if args.model and args.model_tag and args.model_tag.split(":")[0] != args.model:
            raise ConfigError(
                f"the candidate serves {args.model_tag}, not a {args.model!r} model: "
                f"build one with `make build MODEL={args.model}`"
            )
        per_model = model_loadtest(args.model_tag)
        cfg, gates = resolve(cfg, per_model, args.thresholds)
        if per_model.thresholds:
            name = args.model_tag.split(":")[0] if args.model_tag else "?"
            own = ", ".join(f"{m} {b}" for m, b in per_model.thresholds.items())
            print(f"[loadtest] {name}'s own thresholds: {own}", file=sys.stderr)
        if args.duration:
            cfg = cfg.model_copy(
                update={"load": cfg.load.model_copy(update={"duration_s": args.duration})}
            )
        return run(args, cfg, gates)
    except (
        ConfigError,
        thresholds.ThresholdError,
        traffic.NoReferenceError,
        registry.RegistryError,
        bentoml.exceptions.NotFound,  # --model-tag, or a Bento, the store does not hold
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: servers and Locust stopped", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback; the run failed, which is never a pass or a 1
        traceback.print_exc()
        print("error: the load test failed unexpectedly: see the traceback above", file=sys.stderr)
        return EXIT_RUN_ERROR


if __name__ == "__main__":
    sys.exit(main())
