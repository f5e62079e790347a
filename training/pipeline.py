"""Wires the stages together.

Each stage reads its inputs from the work directory and writes its outputs there atomically, so
any stage can be run alone and a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from core import registry
from core.settings import ROOT, Settings
from models import get_spec
from models import predict as path_
from models.config import ModelConfig, load_config
from models.contract import FeatureSchema, ModelSpec, Outputs
from training import parameters, runtimes
from training.evaluate import evaluate
from training.gate import GateResult, is_accepted
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


@dataclass(frozen=True)
class Context:
    spec: ModelSpec
    config: ModelConfig
    config_path: Path
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        spec = get_spec(settings.model)
        path = settings.config or spec.config_path
        return cls(spec, load_config(path), path, settings)

    @property
    def source(self) -> str:
        return self.settings.data_source or self.config.data.source

    @property
    def work(self) -> Path:
        return self.settings.work_dir / self.spec.name

    @property
    def reports(self) -> Path:
        return self.settings.reports_dir

    def artifact(self, name: str) -> Path:
        return self.work / name

    def read(self, name: str) -> Any:
        path = self.artifact(name)
        if not path.exists():
            raise StageInputMissing(f"{path} not found: run the stage that writes it first")
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return joblib.load(path)

    def write(self, name: str, obj: Any) -> None:
        if name.endswith(".json"):
            write_json(self.artifact(name), obj)
        else:
            atomic_write(self.artifact(name), lambda p: joblib.dump(obj, p))


# Stages: each takes the context, reads what it needs, writes what it makes.


def run_load(ctx: Context) -> pd.DataFrame:
    with stage("load", f"reading {ctx.source!r} data for {ctx.spec.name}"):
        df = load(ctx.spec, ctx.source, ctx.config.seed)
        info: dict[str, Any] = {"source": ctx.source, "rows": len(df), "sha256": content_sha256(df)}
        if ctx.source != "default":
            info["file_sha256"] = file_sha256(ROOT / ctx.source)  # ROOT / absolute = absolute
        ctx.write("data.pkl", df)
        ctx.write("data.json", info)
        log.info("[load] %d rows, %d columns, sha256 %s", len(df), df.shape[1], info["sha256"][:12])
    return df


def run_validate(ctx: Context) -> pd.DataFrame:
    df = ctx.read("data.pkl")
    with stage("validate", f"checking {len(df)} rows against the {ctx.spec.name} data contract"):
        typed = validate(df, ctx.spec.schema)
        clean = ctx.spec.clean(typed).reset_index(drop=True)
        log.info(
            "[validate] %d rows valid, %d dropped by clean()", len(clean), len(typed) - len(clean)
        )
        ctx.write("clean.pkl", clean)
    return clean


def run_split(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = ctx.read("clean.pkl")
    with stage("split", "holding out validation data"):
        train_df, valid_df = split(df, ctx.spec, ctx.config.split, ctx.config.seed)
        info: dict[str, Any] = {"train_rows": len(train_df), "validation_rows": len(valid_df)}
        if (tc := ctx.spec.schema.time_column) is not None:
            info["validation_from"] = f"{valid_df[tc].min():%Y-%m-%d}"
            info["validation_to"] = f"{valid_df[tc].max():%Y-%m-%d}"
        ctx.write("train.pkl", train_df)
        ctx.write("valid.pkl", valid_df)
        ctx.write("split.json", info)
        log.info("[split] %s", ", ".join(f"{k}={v}" for k, v in info.items()))
    return train_df, valid_df


def run_train(ctx: Context) -> Any:
    df = ctx.read("train.pkl")
    parameters.check(ctx.spec, ctx.config.params, ctx.config.seed, ctx.config_path)
    with stage("train", f"fitting on {len(df)} rows (seed {ctx.config.seed})"):
        with parameters.explained(ctx.spec, ctx.config.params, ctx.config_path):
            model = train(ctx.spec, df, ctx.config.params, ctx.config.seed)
        ctx.write("model.pkl", model)
    return model


def run_evaluate(ctx: Context) -> dict[str, Any]:
    model, valid_df = ctx.read("model.pkl"), ctx.read("valid.pkl")
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
        model = registry.load_model(str(prod.tag))
        return str(prod.tag), evaluate(ctx.spec, model, valid_df), None
    except Exception as exc:  # a production model from an older schema may not score new data
        return str(prod.tag), None, f"production model {prod.tag} cannot score this data: {exc}"


def run_gate(ctx: Context) -> GateResult:
    report, valid_df = ctx.read("metrics.json"), ctx.read("valid.pkl")
    with stage("gate", "checking thresholds and the production ratchet"):
        prod_tag, prod_report, why = production_metrics(ctx, valid_df)
        result = is_accepted(
            report["overall"],
            ctx.config.gate.parsed(),
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
        model = ctx.read("model.pkl")
        clean, valid_df = ctx.read("clean.pkl"), ctx.read("valid.pkl")
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
    run_load(ctx)
    run_validate(ctx)
    run_split(ctx)
    run_train(ctx)
    run_evaluate(ctx)
    run_gate(ctx)
    return run_register(ctx)


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
