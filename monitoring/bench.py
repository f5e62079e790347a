"""`make bench-monitor`: `make monitor` over 1,000,000 logged predictions (two releases, the last
24 hours, one rotated file) and 100,000 actuals, in a scratch store; then again after 10,000 more
predictions (the incremental run). Baseline, same run: the same command over an empty log (its
fixed cost: imports, reading the model's reference). Budget: the first run under 60 s.
Report: reports/bench-monitor/bench.md and bench.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from core import registry
from core.registry import REFERENCE_FILE
from core.settings import ROOT, get_settings
from models.contract import FeatureSchema
from monitoring import synthetic

PREDICTIONS = 1_000_000
ACTUALS = 100_000
MORE = 10_000
BUDGET_S = 60.0


def _encoded(model_tag: str) -> tuple[list[str], list[float], list[float]]:
    model = registry.get(model_tag)
    schema = FeatureSchema.model_validate(registry.metadata(model)["feature_schema"])
    ref = pd.read_parquet(Path(model.path_of(REFERENCE_FILE)))
    records = schema.records(ref)
    return (
        [json.dumps(r, separators=(",", ":")) for r in records],
        [float(p) for p in ref["prediction"]],
        [float(y) for y in ref[schema.target]],
    )


def _run(env: dict[str, str], logs: Path, now: datetime) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring",
            "run",
            "production",
            "--model",
            "sales",
            "--logs",
            str(logs),
            "--now",
            now.isoformat(),
            "--no-act",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        raise SystemExit(f"make monitor failed ({out.returncode}):\n{out.stderr}")
    return elapsed, out.stdout.strip().splitlines()[0]


def main() -> int:
    prod = registry.production("sales")
    if prod is None:
        raise SystemExit("no production sales model: run `make train promote` first")
    tag = str(prod.tag)
    inputs, predictions, targets = _encoded(tag)
    settings = get_settings()
    out_dir = settings.reports_dir / "bench-monitor"
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="bentogate-bench-monitor-") as scratch:
        root = Path(scratch)
        logs, empty = root / "logs", root / "empty"
        logs.mkdir()
        empty.mkdir()
        env = {
            **os.environ,
            "DO_NOT_TRACK": "1",
            "BENTOGATE_MONITOR_DIR": str(root / "monitor"),
            "BENTOGATE_DEPLOY_DIR": str(root / "deploy"),
            "BENTOGATE_REPORTS_DIR": str(root / "reports"),
        }
        baseline_s, _ = _run(env, empty, now)
        (root / "monitor" / "production-sales.duckdb").unlink(missing_ok=True)

        t0 = time.perf_counter()
        half = PREDICTIONS // 2
        start = now - timedelta(hours=23)
        # r0001 served the first half of the day (now a rotated file), r0002 the second half.
        synthetic.write_fast(
            logs / "predictions.jsonl.1", count=half, model=tag, release="r0001",
            encoded_inputs=inputs, predictions=predictions, start=start, span_s=11 * 3600,
            prefix="a",
        )  # fmt: skip
        synthetic.write_fast(
            logs / "predictions.jsonl", count=half, model=tag, release="r0002",
            encoded_inputs=inputs, predictions=predictions, start=start + timedelta(hours=11.5),
            span_s=11 * 3600, prefix="b",
        )  # fmt: skip
        n = len(targets)
        actual_lines = [
            synthetic.actual_line(f"{p}{i}", targets[i % n], now - timedelta(hours=1))
            for p in ("a", "b")
            for i in range(0, ACTUALS // 2)
        ]
        synthetic.write_lines(logs / "actuals.jsonl", actual_lines)
        write_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in logs.iterdir()) / 1e6

        first_s, verdict = _run(env, logs, now)
        synthetic.write_fast(
            logs / "predictions.jsonl", count=MORE, model=tag, release="r0002",
            encoded_inputs=inputs, predictions=predictions, start=now - timedelta(minutes=30),
            span_s=600, prefix="c",
        )  # fmt: skip
        again_s, _ = _run(env, logs, now)

    figures = {
        "date": now.date().isoformat(),
        "cpus": os.cpu_count(),
        "predictions": PREDICTIONS,
        "actuals": ACTUALS,
        "log_mb": round(size_mb, 1),
        "write_s": round(write_s, 1),
        "baseline_empty_s": round(baseline_s, 1),
        "first_run_s": round(first_s, 1),
        "incremental_run_s": round(again_s, 1),
        "first_over_baseline": round(first_s / baseline_s, 2),
        "incremental_over_baseline": round(again_s / baseline_s, 2),
        "budget_s": BUDGET_S,
        "within_budget": first_s < BUDGET_S,
        "verdict": verdict,
    }
    (out_dir / "bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    md = [
        f"# make monitor on {PREDICTIONS:,} predictions and {ACTUALS:,} actuals ({figures['date']}, "
        f"{figures['cpus']} CPUs)",
        "",
        "| run | seconds | vs empty log (same run) |",
        "|---|---:|---:|",
        f"| empty log (fixed cost: imports, reference) | {baseline_s:.1f} | 1.00 |",
        f"| first run: {size_mb:.0f} MB of logs ingested, quality, drift, reports | {first_s:.1f} "
        f"| {first_s / baseline_s:.2f} |",
        f"| incremental run: {MORE:,} new predictions | {again_s:.1f} | {again_s / baseline_s:.2f} |",
        "",
        f"Budget: first run under {BUDGET_S:.0f} s: {'met' if first_s < BUDGET_S else 'NOT met'}. "
        f"Verdict of the run: {verdict}",
    ]
    (out_dir / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if first_s < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
