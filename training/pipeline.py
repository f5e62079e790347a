"""Wires the stages together.

Each stage reads its inputs from the run folder and writes its outputs there atomically, so any
stage can be run alone and a failed stage leaves nothing half-written. A whole `run` works in a
folder of its own (`<work_dir>/<model>/runs/<id>`) and becomes `current` only once it registered
its model: a failed run leaves the last good one as it was. Stages run alone work in `current`.
Data frames are Parquet and the model skops (core/modelfile.py): no stage file is a pickle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core import modelfile, registry
from core.settings import ROOT, Settings
from models import get_spec
from models import metrics as model_metrics
from models import predict as path_
from models import runtimes as model_runtimes
from models.actuals import target_range
from models.config import ModelConfig, load_config
from models.contract import FeatureSchema, ModelSpec, Outputs
from training import parameters, runtimes
from training.evaluate import evaluate
from training.gate import GateResult, is_accepted, located
from training.load import content_sha256, file_sha256, load
from training.split import split
from training.train import train
from training.validate import validate

log = logging.getLogger("bentogate.training")


class StageInputMissing(RuntimeError):
    pass


class GateFailed(RuntimeError):
    def __init__(self, result: GateResult):
        self.result = result
        super().__init__("quality gate failed:\n  " + "\n  ".join(result.failures))


@contextmanager
def stage(name: str, what: str) -> Iterator[None]:
    log.info("[%s] %s", name, what)
    start = time.perf_counter()
    yield
    log.info("[%s] done in %.2fs", name, time.perf_counter() - start)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def git_commit() -> str:
    if sha := os.environ.get("GITHUB_SHA"):
        return sha
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


KEEP_RUNS = 5  # run folders kept besides `current`: the last failed runs, for a look inside
MODEL_STAGE_FILE = "model"  # the fitted model in a run folder: model.skops (core/modelfile.py)


@dataclass(frozen=True)
class Context:
    spec: ModelSpec
    config: ModelConfig
    config_path: Path
    settings: Settings
    run_dir: Path | None = None  # a whole run's own folder; stages alone use `current`

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        spec = get_spec(settings.model)
        path = settings.config or spec.config_path
        return cls(spec, load_config(path, model_metrics.names(spec)), path, settings)

    @property
    def source(self) -> str:
        return self.settings.data_source or self.config.data.source

    @property
    def home(self) -> Path:
        return self.settings.work_dir / self.spec.name

    @property
    def work(self) -> Path:
        return self.run_dir or self.home / "current"

    @property
    def reports(self) -> Path:
        return self.settings.reports_dir

    def artifact(self, name: str) -> Path:
        return self.work / name

    def read(self, name: str) -> Any:
        if name == MODEL_STAGE_FILE:
            if not modelfile.model_file(self.work).is_file():
                raise StageInputMissing(
                    f"{self.work / modelfile.SKOPS_FILE} not found: run the train stage first"
                )
            trust = self.config.persistence
            return modelfile.load_model(
                self.work, trusted=trust.trusted, allow_pickle=trust.allow_pickle
            )
        path = self.artifact(name)
        if not path.exists():
            raise StageInputMissing(f"{path} not found: run the stage that writes it first")
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return pd.read_parquet(path)

    def write(self, name: str, obj: Any) -> None:
        if name == MODEL_STAGE_FILE:
            trust = self.config.persistence
            self.work.mkdir(parents=True, exist_ok=True)
            modelfile.dump_model(
                obj,
                self.work,
                trusted=trust.trusted,
                allow_pickle=trust.allow_pickle,
                config=str(self.config_path),
            )
        elif name.endswith(".json"):
            write_json(self.artifact(name), obj)
        else:
            atomic_write(self.artifact(name), lambda p: obj.to_parquet(p))


def new_run(ctx: Context) -> Context:
    """The context of a fresh run, in a folder of its own under `<work_dir>/<model>/runs/`."""
    runs = ctx.home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    _prune(runs, keep=ctx.home / "current")
    run = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))
    return dataclasses.replace(ctx, run_dir=run)


def _prune(runs: Path, keep: Path) -> None:
    """Remove all but the newest KEEP_RUNS run folders, never the one `keep` points at."""
    kept = keep.resolve() if keep.exists() else None
    others = sorted(
        (p for p in runs.iterdir() if p.is_dir() and p.resolve() != kept),
        key=lambda p: p.stat().st_mtime,
    )
    for old in others[: max(len(others) - KEEP_RUNS, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def make_current(ctx: Context) -> None:
    """Point `current` at this run (atomically: a symlink replaced in one rename)."""
    assert ctx.run_dir is not None
    current = ctx.home / "current"
    if current.is_dir() and not current.is_symlink():  # the layout before run folders
        os.replace(current, ctx.home / "runs" / "before-run-folders")
    link = ctx.home / f".current.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("runs") / ctx.run_dir.name)
    os.replace(link, current)
    _prune(ctx.home / "runs", keep=current)


def current(ctx: Context) -> Context:
    """Stages run alone work in `current`: made (an empty run) if there is none yet."""
    if not (ctx.home / "current").exists():
        make_current(new_run(ctx))
    return ctx


# Stages: each takes the context, reads what it needs, writes what it makes.


def run_load(ctx: Context) -> pd.DataFrame:
    with stage("load", f"reading {ctx.source!r} data for {ctx.spec.name}"):
        df = load(ctx.spec, ctx.source, ctx.config.seed)
        info: dict[str, Any] = {"source": ctx.source, "rows": len(df), "sha256": content_sha256(df)}
        if ctx.source != "default":
            info["file_sha256"] = file_sha256(ROOT / ctx.source)  # ROOT / absolute = absolute
        ctx.write("data.parquet", df)
        ctx.write("data.json", info)
        log.info("[load] %d rows, %d columns, sha256 %s", len(df), df.shape[1], info["sha256"][:12])
    return df


def run_validate(ctx: Context) -> pd.DataFrame:
    df = ctx.read("data.parquet")
    with stage("validate", f"checking {len(df)} rows against the {ctx.spec.name} data contract"):
        typed = validate(df, ctx.spec.schema)
        clean = ctx.spec.clean(typed).reset_index(drop=True)
        log.info(
            "[validate] %d rows valid, %d dropped by clean()", len(clean), len(typed) - len(clean)
        )
        ctx.write("clean.parquet", clean)
    return clean


def run_split(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = ctx.read("clean.parquet")
    with stage("split", "holding out validation data"):
        train_df, valid_df = split(df, ctx.spec, ctx.config.split, ctx.config.seed)
        info: dict[str, Any] = {"train_rows": len(train_df), "validation_rows": len(valid_df)}
        if (tc := ctx.spec.schema.time_column) is not None:
            info["validation_from"] = f"{valid_df[tc].min():%Y-%m-%d}"
            info["validation_to"] = f"{valid_df[tc].max():%Y-%m-%d}"
        ctx.write("train.parquet", train_df)
        ctx.write("valid.parquet", valid_df)
        ctx.write("split.json", info)
        log.info("[split] %s", ", ".join(f"{k}={v}" for k, v in info.items()))
    return train_df, valid_df


def run_train(ctx: Context) -> Any:
    df = ctx.read("train.parquet")
    parameters.check(ctx.spec, ctx.config.params, ctx.config.seed, ctx.config_path)
    with stage("train", f"fitting on {len(df)} rows (seed {ctx.config.seed})"):
        model = train(ctx.spec, df, ctx.config.params, ctx.config.seed, ctx.config_path)
        ctx.write(MODEL_STAGE_FILE, model)
    return model


def run_evaluate(ctx: Context) -> dict[str, Any]:
    model, valid_df = ctx.read(MODEL_STAGE_FILE), ctx.read("valid.parquet")
    with stage("evaluate", f"scoring {len(valid_df)} validation rows"):
        report = evaluate(ctx.spec, model, valid_df)
        ctx.write("metrics.json", report)
        log.info("[evaluate] %s", ", ".join(f"{k}={v:.4f}" for k, v in report["overall"].items()))
    return report


def production_metrics(
    ctx: Context, valid_df: pd.DataFrame
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """The production model: (tag, its metrics on this validation data, why no comparison)."""
    prod = registry.production(ctx.spec.name)
    if prod is None:
        return None, None, "no production model yet"
    try:
        model = model_runtimes.load_registered(str(prod.tag))
        return str(prod.tag), evaluate(ctx.spec, model, valid_df), None
    except Exception as exc:  # a production model from an older schema may not score new data
        return str(prod.tag), None, f"production model {prod.tag} cannot score this data: {exc}"


def run_gate(ctx: Context) -> GateResult:
    report, valid_df = ctx.read("metrics.json"), ctx.read("valid.parquet")
    with stage("gate", "checking thresholds and the production ratchet"):
        prod_tag, prod_report, why = production_metrics(ctx, valid_df)
        result = is_accepted(
            report["overall"],
            located(ctx.config.gate.parsed(), ctx.config_path),
            production=prod_report["overall"] if prod_report else None,
            ratchet=ctx.config.gate.ratchet,
        )
        gate = {
            **result.to_dict(),
            "production_tag": prod_tag,
            "production_metrics": prod_report["overall"] if prod_report else None,
            "ratchet_skipped": why,
        }
        ctx.write("gate.json", gate)
        write_reports(ctx, report, gate)
        for check in result.checks:
            log.info("[gate] %s %s", "PASS" if check.passed else "FAIL", check.message)
        if why:
            log.info("[gate] ratchet not applied: %s", why)
    if not result.accepted:
        raise GateFailed(result)
    return result


def run_register(ctx: Context) -> str:
    gate = ctx.read("gate.json")
    if not gate["accepted"]:
        raise GateFailed(GateResult.from_dict(gate))
    with stage("register", f"saving the candidate into the model store as {ctx.spec.name}"):
        model = ctx.read(MODEL_STAGE_FILE)
        clean, valid_df = ctx.read("clean.parquet"), ctx.read("valid.parquet")
        fitted = ctx.spec.schema.fitted(clean)
        cfg = ctx.config
        classes = None
        if ctx.spec.task == "classification":
            classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        records = fitted.records(valid_df)
        expected = path_.predict_records(ctx.spec, model, records)
        with tempfile.TemporaryDirectory(prefix="bentogate-runtimes-") as scratch:
            verdicts, files = runtimes.admit(
                ctx.spec, model, records, expected, classes, cfg.serving.parity, Path(scratch)
            )
            metadata = {
                "task": ctx.spec.task,
                "metrics": ctx.read("metrics.json"),
                "gate": gate,
                "params": cfg.params,
                "seed": cfg.seed,
                "config": cfg.model_dump(mode="json"),
                "data": ctx.read("data.json"),
                "split": ctx.read("split.json"),
                "feature_schema": fitted.model_dump(mode="json"),
                "golden": golden_example(ctx.spec, fitted, model, valid_df),
                "predict_path": {
                    "prepare": "custom" if ctx.spec.prepare is not None else "default",
                    "predict": "custom" if ctx.spec.predict is not None else "default",
                },
                "runtimes": verdicts,
                "runtime": runtimes.chosen(verdicts),
                "classes": classes,
                # A regressor's actuals are bounded from it (models/actuals.py).
                "target": (
                    target_range(clean[ctx.spec.schema.target].tolist())
                    if ctx.spec.task == "regression"
                    else None
                ),
            }
            reference = Path(scratch) / registry.REFERENCE_FILE
            reference_sample(ctx.spec, fitted, valid_df, expected).to_parquet(reference)
            tag = registry.register(
                ctx.spec.name,
                metadata=metadata,
                git_commit=git_commit(),
                files=[*files.values(), reference],
            )
        ctx.write("registered.json", {"tag": tag})
        log.info("[register] %s (stage: candidate, runtime: %s)", tag, metadata["runtime"])
    return tag


REFERENCE_ROWS = 5000


def reference_sample(
    spec: ModelSpec, fitted: FeatureSchema, valid_df: pd.DataFrame, outputs: Outputs
) -> pd.DataFrame:
    """A bounded sample of validation rows with the target and the prediction, saved with the
    model: the load test's traffic and the reference monitoring compares live data with."""
    frame = valid_df[[*fitted.features, spec.schema.target]].reset_index(drop=True)
    frame["prediction"] = outputs.predictions
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(REFERENCE_ROWS, random_state=0).sort_index()
    return frame.reset_index(drop=True)


def golden_example(
    spec: ModelSpec, fitted: FeatureSchema, model: Any, valid_df: pd.DataFrame, rows: int = 4
) -> dict[str, Any]:
    """Request records and what the predict path answers for them: the service is ready only
    once its runtime reproduces these, which catches a broken artifact or a library drift."""
    records = [fitted.example_record(), *fitted.records(valid_df.head(rows))]
    out = path_.predict_records(spec, model, records)
    golden: dict[str, Any] = {"records": records, "predictions": out.predictions.tolist()}
    if out.probabilities is not None:
        golden["probabilities"] = out.probabilities.tolist()
    return golden


def run_all(ctx: Context) -> str:
    # Parameter mistakes stop the run before any data is read.
    parameters.check(ctx.spec, ctx.config.params, ctx.config.seed, ctx.config_path)
    ctx = new_run(ctx)
    log.info("[run] working in %s", ctx.work)
    run_load(ctx)
    run_validate(ctx)
    run_split(ctx)
    run_train(ctx)
    run_evaluate(ctx)
    run_gate(ctx)
    tag = run_register(ctx)
    make_current(ctx)
    return tag


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)


def write_reports(ctx: Context, report: dict[str, Any], gate: dict[str, Any]) -> None:
    """reports/metrics.json and reports/metrics.md: what a reviewer reads."""
    write_json(ctx.reports / "metrics.json", {"model": ctx.spec.name, **report, "gate": gate})
    prod = gate.get("production_metrics") or {}
    lines = [
        f"### Model quality: `{ctx.spec.name}` ({'accepted' if gate['accepted'] else 'REJECTED'})",
        "",
        f"Validation rows: {report['rows']}. Production: `{gate.get('production_tag') or 'none'}`"
        + (f" ({gate['ratchet_skipped']})" if gate.get("ratchet_skipped") else ""),
        "",
        "| check | candidate | bound | production | result |",
        "|---|---|---|---|---|",
    ]
    for c in gate["checks"]:
        metric = c["name"].removeprefix("ratchet:")
        lines.append(
            f"| {c['name']} | {_fmt(c['measured'])} | {c['bound']} | {_fmt(prod.get(metric))} | "
            f"{'pass' if c['passed'] else '**FAIL**'} |"
        )
    metrics = list(report["overall"])
    lines += ["", "| metric | candidate | production |", "|---|---|---|"]
    lines += [f"| {m} | {_fmt(report['overall'][m])} | {_fmt(prod.get(m))} |" for m in metrics]
    for key, groups in report.items():
        if key.startswith("by_"):
            lines += [
                "",
                f"#### By {key[3:]}",
                "",
                "| " + key[3:] + " | " + " | ".join(metrics) + " |",
                "|---" * (len(metrics) + 1) + "|",
            ]
            lines += [
                f"| {g} | " + " | ".join(_fmt(v.get(m)) for m in metrics) + " |"
                for g, v in groups.items()
            ]
    atomic_write(ctx.reports / "metrics.md", lambda p: p.write_text("\n".join(lines) + "\n"))
