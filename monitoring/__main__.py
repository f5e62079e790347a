"""Command line of monitoring: `python -m monitoring <command>`.

  run ENV [--model sales] [--window 24h]   ingest the logs, judge the live version, write
                                           reports/monitor/<env>-<model>/, act on a breach
  feedback ENV --file actuals.csv          store actuals from a file (validated whole first)

The logs are the local target's (<deploy_dir>/<env>/<model>/predictions.jsonl, rotated files and
actuals.jsonl beside it), or --logs DIR wherever they are collected (a volume, a download).

Exit codes: 0 healthy, or too little data to judge; 1 a check failed (degraded); 2 invalid
arguments, config or input file (the message names the file, line and field); 3 a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry, before it is imported

from core import cli, registry
from core.settings import Settings, get_settings
from core.yamlconf import ConfigError
from deploy import config as deploy_config
from models import UnknownModelError, actuals, get_spec
from models import metrics as model_metrics
from models.actuals import ActualRule
from models.config import package_config
from models.contract import ModelSpec, Task
from monitoring import act, drift, feedback, monitor, report, store
from monitoring import config as monitor_config

EXIT_DEGRADED, EXIT_USAGE, EXIT_BUG = 1, 2, 3


class UsageError(ValueError):
    pass


def _check_target(settings: Settings, env: str, model: str) -> tuple[ModelSpec, list[str]]:
    """The model's spec and the deploy config's environments; UsageError for an unknown
    environment or model."""
    envs = list(deploy_config.load(settings.deploy_config).environments)
    if env not in envs:
        raise UsageError(
            f"no environment {env!r} in {settings.deploy_config.name} (have: {', '.join(envs)})"
        )
    try:
        return get_spec(model), envs
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None


def _logs(settings: Settings, args: argparse.Namespace) -> Path:
    if args.logs and not Path(args.logs).is_dir():  # a typo would judge (and act on) old data
        raise UsageError(f"--logs {args.logs}: no such folder")
    return Path(args.logs) if args.logs else settings.deploy_dir / args.env / args.model


def _actual_rule(settings: Settings, env: str, model: str, task: Task) -> ActualRule:
    """The actuals the model accepts: that of the release live in the environment (local
    target), else of the production model in the store, else any of its task."""
    history, stable = monitor.deploy_state(settings.deploy_dir / env / model)
    tag = history.get(stable or "", {}).get("model_tag")
    if tag is None and (production := registry.production(model)) is not None:
        tag = str(production.tag)
    return monitor.actual_rule(str(tag), task) if tag else actuals.rule(task)


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    task = _check_target(settings, args.env, args.model)[0].task
    rows = feedback.read(Path(args.file), _actual_rule(settings, args.env, args.model, task))
    with store.connect(store.database(settings.monitor_dir, args.env, args.model)) as con:
        n = store.add_actuals(con, rows, args.model, source=f"file:{Path(args.file).name}")
    print(f"{args.env}/{args.model}: stored {n} actuals from {args.file}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    t0 = time.monotonic()
    spec, environments = _check_target(settings, args.env, args.model)
    cfg = monitor_config.load(settings.monitor_config, environments)
    # Before any work: the model's gate bounds, the live quality checks, name its own metrics.
    model_cfg = package_config(args.model, metrics=model_metrics.names(spec))
    window = args.window or cfg.window
    try:
        window_s = monitor_config.parse_window(window)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    now = datetime.now(UTC)
    if args.now:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--now {args.now!r}: not an ISO 8601 time") from None
        if now.tzinfo is None:
            raise UsageError(f"--now {args.now!r}: give a time zone, e.g. +00:00")
        if now.year < 2000:  # the window reaches back from it: no date before year 1 exists
            raise UsageError(f"--now {args.now!r}: expected a time after 2000")
    logs = _logs(settings, args)
    out_dir = args.out or settings.reports_dir / "monitor" / f"{args.env}-{args.model}"
    out_dir.mkdir(parents=True, exist_ok=True)
    database = store.database(settings.monitor_dir, args.env, args.model)
    # Evidently is imported in a worker process while the logs are ingested; with no logs and no
    # store there is nothing to compare, and no worker to wait for.
    work = database.exists() or bool(store.rotated(logs, store.PREDICTIONS))
    with (
        drift.Worker() if work else contextlib.nullcontext() as drifts,
        store.connect(database) as con,
    ):
        preds = store.ingest_predictions(con, logs)
        actuals = store.ingest_actuals(con, logs)
        access = store.ingest_access(con, logs / "nginx" / "logs")
        ingested = {
            "logs": str(logs),
            "predictions": preds.__dict__,
            "actuals": actuals.__dict__,
            "router_access": access.__dict__,
            "ingest_s": round(time.monotonic() - t0, 2),
        }
        result = monitor.run(
            con,
            environment=args.env,
            model=args.model,
            cfg=cfg,
            window=window,
            window_s=window_s,
            now=now,
            state_dir=settings.deploy_dir / args.env / args.model,
            out_dir=out_dir,
            ingested=ingested,
            drifts=drifts,
        )
    if result.verdict == monitor.DEGRADED and not args.no_act:
        what = cfg.action(args.env)
        done = "Notified."
        if what == "rollback":
            ok, said = act.rollback(args.env, args.model)
            done = f"Rolled back: {said}" if ok else f"Rollback FAILED: {said}"
        result.action = done
        result.action += " " + act.send(
            settings, act.message(args.env, args.model, result.reasons, done, args.link)
        )
    bounds = {t.metric: t.value for t in model_cfg.gate.parsed()} if model_cfg else {}
    result.ingested["total_s"] = round(time.monotonic() - t0, 2)
    report.write(result, out_dir, bounds)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a", encoding="utf-8") as f:
            f.write(report.markdown(result))
    print(f"{args.env}/{args.model}: {report.verdict_line(result)}")
    if result.action:
        print(f"action: {result.action}")
    print(f"report: {out_dir / 'report.html'} ({result.ingested['total_s']} s)")
    return EXIT_DEGRADED if result.verdict == monitor.DEGRADED else 0


def parser() -> argparse.ArgumentParser:
    settings = get_settings()
    p = cli.ArgumentParser(
        prog="python -m monitoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    r = sub.add_parser("run", help="ingest, judge, report, act")
    r.add_argument("env")
    r.add_argument("--model", default=settings.model)
    r.add_argument("--window", help="e.g. 24h, 7d (default: monitoring/config.yaml)")
    r.add_argument("--now", help="end of the window, ISO 8601 (default: now)")
    r.add_argument("--logs", help="directory of the logs (default: the local target's)")
    r.add_argument("--out", type=Path, help="default: reports/monitor/<env>-<model>/")
    r.add_argument("--link", help="URL of the report, for the notification")
    r.add_argument(
        "--no-act", action="store_true", help="report only: no notification, no rollback"
    )
    f = sub.add_parser("feedback", help="store actuals from a CSV file")
    f.add_argument("env")
    f.add_argument("--model", default=settings.model)
    f.add_argument("--file", required=True)
    return p


COMMANDS = {"run": cmd_run, "feedback": cmd_feedback}


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    try:
        return COMMANDS[args.command](args, settings)
    except (ConfigError, UsageError, feedback.FeedbackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print("error: unexpected failure (a bug): see the traceback above", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
