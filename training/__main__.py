"""Command line of the training pipeline: `python -m training <stage>`.

Exit codes: 0 success; 1 the quality gate rejected the candidate; 2 invalid data, config, estimator
parameters or usage, or the model package's own code failed (the message names the file, line and
field); 3 an unexpected error elsewhere (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

from core import cli, modelfile, registry
from core.settings import Settings, get_settings
from core.yamlconf import ConfigError
from models import UnknownModelError, available, blame
from training import pipeline
from training.load import DataLoadError
from training.split import SplitError
from training.validate import DataValidationError

EXIT_GATE_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_BUG = 3

STAGES = {
    "load": pipeline.run_load,
    "validate": pipeline.run_validate,
    "split": pipeline.run_split,
    "train": pipeline.run_train,
    "evaluate": pipeline.run_evaluate,
    "gate": pipeline.run_gate,
    "register": pipeline.run_register,
    "run": pipeline.run_all,
}


def _parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", help="model package under models/ (default: BENTOGATE_MODEL or sales)"
    )
    p.add_argument("--config", type=Path, help="config YAML (default: models/<model>/config.yaml)")
    p.add_argument("--data", help="data source: 'default' or a CSV/Parquet path (overrides config)")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser(
        "run", help="all stages: load -> validate -> split -> train -> evaluate -> gate -> register"
    )
    for name in STAGES:
        if name != "run":
            sub.add_parser(name, help=f"run the {name} stage alone")
    promote = sub.add_parser("promote", help="make a registered candidate the production model")
    promote.add_argument(
        "tag", nargs="?", help="model tag (default: the last registered candidate)"
    )
    sub.add_parser("models", help="list registered models with stage and key metrics")
    sub.add_parser("production", help="print the production model's tag (exit 1 if none)")
    sub.add_parser("candidate", help="print the tag of the last registered candidate")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k, v in {"model": args.model, "config": args.config, "data_source": args.data}.items()
        if v is not None
    }
    return get_settings(**overrides)


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    settings = _settings(args)  # a malformed one: exit 2 (cli.refuses_bad_settings)
    try:
        if args.command == "models":
            if args.model is None and settings.model == Settings.model_fields["model"].default:
                # `make models` alone: say whose models these are, and how to see another's.
                others = ", ".join(m for m in available() if m != settings.model)
                # On stderr, in words no row starts with: the listing itself stays parseable.
                print(
                    f"listing {settings.model}, the default model (MODEL=<name> for another:"
                    f" {others})",
                    file=sys.stderr,
                )
            return _list_models(settings)
        if args.command == "production":
            prod = registry.production(settings.model)
            if prod is None:
                print(f"no production model for {settings.model!r}", file=sys.stderr)
                return 1
            print(prod.tag)
            return 0
        ctx = pipeline.Context.from_settings(settings)
        if args.command == "candidate":
            print(ctx.read("registered.json")["tag"])
            return 0
        if args.command == "promote":
            tag = args.tag or ctx.read("registered.json")["tag"]
            promoted, previous = registry.promote(tag)
            print(f"{promoted} is now production" + (f"; {previous} archived" if previous else ""))
            return 0
        if args.command != "run":
            ctx = pipeline.current(ctx)
        result = STAGES[args.command](ctx)
        if args.command in ("run", "register"):
            print(result)
        return 0
    except pipeline.GateFailed as exc:
        print(f"error: {exc}\nThe candidate was not registered.", file=sys.stderr)
        return EXIT_GATE_FAILED
    except (
        ConfigError,
        DataLoadError,
        DataValidationError,
        SplitError,
        UnknownModelError,
        pipeline.StageInputMissing,
        registry.RegistryError,
        modelfile.UnsafeModelFile,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except Exception as exc:
        where = blame(exc, settings.model)
        if not where.endswith("/"):  # raised in the model package's own code: name its line
            print(f"error: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_INVALID_INPUT
        # Not the user's input: keep the traceback for a bug report, and never look like a rejection.
        traceback.print_exc()
        print(
            "error: unexpected failure (a bug, not a rejection): see the traceback above",
            file=sys.stderr,
        )
        return EXIT_BUG


def _list_models(settings: Settings) -> int:
    rows = registry.entries(settings.model)
    if not rows:
        print(f"no models registered for {settings.model!r}")
        return 0
    keys = list(rows[-1].metrics)[:4]
    print(
        f"{'tag':<32} {'stage':<11} {'created':<20} {'commit':<10} {'runtime':<9}"
        + " ".join(f"{k:>9}" for k in keys)
    )
    for r in rows:
        print(
            f"{r.tag:<32} {r.stage:<11} {r.created:<20} {r.git_commit[:8]:<10} {r.runtime:<9}"
            + " ".join(f"{r.metrics.get(k, float('nan')):>9.4f}" for k in keys)
        )
    # The newest model's runtime verdicts: why a faster runtime was refused, in one line each.
    for name, verdict in rows[-1].runtimes.items():
        said = "admitted" if verdict.get("admitted") else "refused"
        print(f"  {rows[-1].tag} {name}: {said}: {verdict.get('reason', '')}")
    # What each model's files are, and any that would run code when loaded.
    for r in rows:
        if not r.files:
            print(f"  {r.tag} files: no sha256 recorded: it will not load; retrain (make train)")
        elif modelfile.PICKLE_FILE in r.files:
            print(
                f"  {r.tag} files: {', '.join(sorted(r.files))}: {modelfile.PICKLE_FILE} is a "
                "PICKLE (runs code when loaded), opted in by persistence.allow_pickle"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
