"""make bench-batch: 1M rows of sales data, scored three ways in the same run.

1. `make score`'s job (python -m batch score) on Spark local[2]: rows/s end to end (JVM start
   included) and of its scoring stage, driver peak memory (Python and JVM), from its manifest;
2. the same admitted runtime, same validation and output (batch.score.score_frame) in one plain
   Python process over the same file, chunks of 10,000 rows;
3. scikit-learn's own `predict` on the fitted model in one process (one OpenMP thread), same file.

Ratios are against 2 and 3 measured here, now: the machine is shared, absolute figures vary.
Writes reports/bench-batch/results.json and results.md. Bounded: one run of each, 1M rows.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core for the one-process baselines

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from batch import rows
from batch.job import pick_runtime, resolve_model
from batch.score import score_frame
from core.settings import ROOT, get_settings
from models import get_spec
from models import predict as predict_path
from models.config import package_config
from models.runtimes import load_registered

ROWS = 1_000_000
CHUNK = 10_000
TARGETS = {"vs_one_process": 1.5, "vs_sklearn": 10.0, "driver_peak_mb": 1024}


def sales_file(folder: Path) -> Path:
    """1M rows of the default data (the training seed: every item is one the model knows)."""
    path = folder / "sales-1m.parquet"
    if not path.exists():
        spec = get_spec("sales")
        config = package_config("sales")
        base = spec.default_data(config.seed if config is not None else 42)
        big = pd.concat([base] * (ROWS // len(base) + 1), ignore_index=True).head(ROWS)
        big.to_parquet(path, index=False)
    return path


def spark_job(data: Path, folder: Path) -> dict[str, Any]:
    out = folder / "spark-out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "BENTOGATE_BATCH_DIR": str(folder / "jobs")}
    command = [sys.executable, "-m", "batch", "score", "--data", str(data), "--out", str(out)]
    t = time.perf_counter()
    subprocess.run([*command, "--master", "local[2]"], cwd=ROOT, env=env, check=True, timeout=900)
    wall = time.perf_counter() - t
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "manifest": manifest}


def one_process(data: Path, folder: Path) -> float:
    """Seconds to score the file with the same runtime and checks, in this process."""
    from serving.runtime import serve_runtime

    model, stored = resolve_model(get_settings())
    model = pick_runtime(model, stored)
    t = time.perf_counter()
    runtime, _ = serve_runtime(model, stored)
    validator = rows.batch_model(model.schema)
    frame = pd.read_parquet(data, columns=list(model.schema.features))
    parts = [
        score_frame(c, pd.Series(range(i, i + len(c))), model, runtime, validator)
        for i in range(0, len(frame), CHUNK)
        for c in [frame.iloc[i : i + CHUNK]]
    ]
    pd.concat(parts).to_parquet(folder / "one-process.parquet")
    return time.perf_counter() - t


def sklearn_process(data: Path) -> float:
    """Seconds for scikit-learn's own predict over the file (the predict path's input)."""
    model, _ = resolve_model(get_settings())
    spec = get_spec(model.name)
    t = time.perf_counter()
    fitted = load_registered(str(model.tag))
    frame = pd.read_parquet(data, columns=list(model.schema.features))
    for i in range(0, len(frame), CHUNK):
        records = model.schema.records(frame.iloc[i : i + CHUNK])
        fitted.predict(predict_path.prepare(spec, records))
    return time.perf_counter() - t


def main() -> int:
    folder = get_settings().reports_dir / "bench-batch"
    folder.mkdir(parents=True, exist_ok=True)
    data = sales_file(folder)
    spark = spark_job(data, folder)
    single = one_process(data, folder)
    sk = sklearn_process(data)
    m = spark["manifest"]
    scored = m["rows"]["in"]
    stage = m["timings"]["score_and_write_s"]
    result = {
        "rows": scored,
        "model": m["model"],
        "runtime": m["runtime"],
        "spark_rows_per_s": scored / spark["wall_s"],
        "spark_stage_rows_per_s": scored / stage,
        "spark_rows_per_s_per_core": scored / spark["wall_s"] / 2,
        "one_process_rows_per_s": scored / single,
        "sklearn_rows_per_s": scored / sk,
        "spark_wall_s": spark["wall_s"],
        "spark_start_s": m["timings"]["spark_start_s"],
        "driver_memory_mb": m["memory_mb"],
        "load_average": os.getloadavg(),
    }
    result["ratio_vs_one_process"] = result["spark_rows_per_s"] / result["one_process_rows_per_s"]
    result["stage_ratio_vs_one_process"] = (
        result["spark_stage_rows_per_s"] / result["one_process_rows_per_s"]
    )
    result["ratio_vs_sklearn"] = result["spark_rows_per_s"] / result["sklearn_rows_per_s"]
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    peak = max(v for v in m["memory_mb"].values() if v is not None)
    lines = [
        f"# make bench-batch: {scored} rows, {m['model']} ({m['runtime']} runtime)",
        "",
        "| path | rows/s | rows/s per core |",
        "| --- | ---: | ---: |",
        f"| make score, local[2], end to end | {result['spark_rows_per_s']:,.0f} | "
        f"{result['spark_rows_per_s_per_core']:,.0f} |",
        f"| make score, scoring stage only | {result['spark_stage_rows_per_s']:,.0f} | "
        f"{result['spark_stage_rows_per_s'] / 2:,.0f} |",
        f"| same runtime, one Python process | {result['one_process_rows_per_s']:,.0f} | "
        f"{result['one_process_rows_per_s']:,.0f} |",
        f"| scikit-learn predict, one process | {result['sklearn_rows_per_s']:,.0f} | "
        f"{result['sklearn_rows_per_s']:,.0f} |",
        "",
        f"- vs one process: {result['ratio_vs_one_process']:.2f}x end to end, "
        f"{result['stage_ratio_vs_one_process']:.2f}x scoring stage "
        f"(target {TARGETS['vs_one_process']}x)",
        f"- vs scikit-learn: {result['ratio_vs_sklearn']:.2f}x (target {TARGETS['vs_sklearn']}x)",
        f"- driver peak memory: Python {m['memory_mb']['driver_python_peak']:.0f} MB, JVM "
        f"{m['memory_mb']['driver_jvm_peak'] or 0:.0f} MB (target < {TARGETS['driver_peak_mb']} MB:"
        f" {'met' if peak < TARGETS['driver_peak_mb'] else 'NOT met'})",
        f"- Spark start {result['spark_start_s']:.1f} s; load average during the run "
        f"{', '.join(f'{x:.1f}' for x in result['load_average'])} (2 cores, shared)",
    ]
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
