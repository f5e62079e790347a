"""make bench-batch: 1M rows of sales data, scored three ways in the same run.

1. `make score`'s job (python -m batch score) on Spark local[2]: rows/s end to end (JVM start
   included) and of its scoring stage (the tasks: read, score, write), driver peak memory
   (Python and JVM), from its manifest;
2. the same admitted runtime, same validation and output (batch.score.score_frame) in one plain
   Python process over the same file, in batches of BATCH_ROWS (as each Spark task);
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

from batch import columnar, rows
from batch.job import pick_runtime, resolve_model
from batch.score import BATCH_ROWS, score_frame
from core.settings import ROOT, get_settings
from models import get_spec
from models.config import package_config
from models.runtimes import load_registered

ROWS = 1_000_000
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


def one_process(data: Path, folder: Path) -> dict[str, float]:
    """The same bulk path (batch.score.score_frame: column-wise check, one runtime call per
    batch, the admitted runtime) in this one process, over the same file, in the same batches
    as Spark's Arrow batches, written to Parquet: Spark's work without Spark."""
    from serving.runtime import serve_runtime

    model, stored = resolve_model(get_settings())
    model = pick_runtime(model, stored)
    t = time.perf_counter()
    runtime, _ = serve_runtime(model, stored)
    validator = rows.batch_model(model.schema)
    frame = pd.read_parquet(data, columns=list(model.schema.features))
    read = time.perf_counter() - t
    parts = [
        score_frame(c, pd.Series(range(i + 1, i + 1 + len(c))), model, runtime, validator)
        for i in range(0, len(frame), BATCH_ROWS)
        for c in [frame.iloc[i : i + BATCH_ROWS]]
    ]
    pd.concat(parts).to_parquet(folder / "one-process.parquet")
    (folder / "one-process.parquet").unlink()
    return {"total_s": time.perf_counter() - t, "load_and_read_s": read}


def sklearn_process(data: Path) -> dict[str, float]:
    """scikit-learn's own predict on the fitted model over the same file, fed as cheaply as
    we know: the model input built column-wise (batch.columnar, no records, no JSON), then
    `predict` per batch. Timed in parts: building the input, the feature transforms
    (ColumnTransformer), the whole predict (transforms + trees)."""
    model, _ = resolve_model(get_settings())
    t = time.perf_counter()
    fitted = load_registered(str(model.tag))
    frame = pd.read_parquet(data, columns=list(model.schema.features))
    times = {"load_and_read_s": time.perf_counter() - t, "input_s": 0.0, "predict_s": 0.0}
    transforms = _transforms(fitted)
    times["transforms_s"] = 0.0 if transforms is not None else float("nan")
    for i in range(0, len(frame), BATCH_ROWS):
        t1 = time.perf_counter()
        features = columnar.check(frame.iloc[i : i + BATCH_ROWS], model.schema).frame
        t2 = time.perf_counter()
        fitted.predict(features)
        t3 = time.perf_counter()
        times["input_s"] += t2 - t1
        times["predict_s"] += t3 - t2
        if transforms is not None:  # measured apart, once more, outside the predict's time
            t4 = time.perf_counter()
            transforms.transform(features)
            times["transforms_s"] += time.perf_counter() - t4
    times["total_s"] = times["load_and_read_s"] + times["input_s"] + times["predict_s"]
    return times


def _transforms(fitted: Any) -> Any:
    """The fitted ColumnTransformer inside the model (the sales model's Pipeline), if any."""
    inner = getattr(fitted, "regressor_", fitted)
    steps = getattr(inner, "named_steps", {})
    return steps.get("features")


def distinct_rows(data: Path) -> int:
    """Rows of the file with distinct feature values (each walks the trees once per batch)."""
    model, _ = resolve_model(get_settings())
    return len(pd.read_parquet(data, columns=list(model.schema.features)).drop_duplicates())


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
    result: dict[str, Any] = {
        "rows": scored,
        "distinct_feature_rows": distinct_rows(data),
        "batch_rows": BATCH_ROWS,
        "model": m["model"],
        "runtime": m["runtime"],
        "spark_rows_per_s": scored / spark["wall_s"],
        "spark_stage_rows_per_s": scored / stage,
        "one_process_rows_per_s": scored / single["total_s"],
        "sklearn_rows_per_s": scored / sk["total_s"],
        "sklearn_predict_rows_per_s": scored / sk["predict_s"],
        "spark_wall_s": spark["wall_s"],
        "spark_start_s": m["timings"]["spark_start_s"],
        "spark_stage_s": stage,
        "one_process_s": single,
        "sklearn_s": sk,
        "driver_memory_mb": m["memory_mb"],
        "load_average": os.getloadavg(),
    }
    ratios = {
        "end_to_end_vs_one_process": result["spark_rows_per_s"] / result["one_process_rows_per_s"],
        "stage_vs_one_process": result["spark_stage_rows_per_s"] / result["one_process_rows_per_s"],
        "end_to_end_vs_sklearn": result["spark_rows_per_s"] / result["sklearn_rows_per_s"],
        "stage_vs_sklearn": result["spark_stage_rows_per_s"] / result["sklearn_rows_per_s"],
        "one_process_vs_sklearn": result["one_process_rows_per_s"] / result["sklearn_rows_per_s"],
    }
    result["ratios"] = ratios
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    peak = max(v for v in m["memory_mb"].values() if v is not None)
    per_core = lambda r, cores: f"{r:,.0f} | {r / cores:,.0f}"  # noqa: E731
    lines = [
        f"# make bench-batch: {scored:,} rows ({result['distinct_feature_rows']:,} distinct "
        f"feature rows), {m['model']} ({m['runtime']} runtime), batches of {BATCH_ROWS:,}",
        "",
        "| path | seconds | rows/s | rows/s per core |",
        "| --- | ---: | ---: | ---: |",
        f"| make score, local[2], end to end | {spark['wall_s']:.1f} | "
        f"{per_core(result['spark_rows_per_s'], 2)} |",
        f"| make score, scoring stage (read, score, write) | {stage:.1f} | "
        f"{per_core(result['spark_stage_rows_per_s'], 2)} |",
        f"| same bulk path, one Python process | {single['total_s']:.1f} | "
        f"{per_core(result['one_process_rows_per_s'], 1)} |",
        f"| scikit-learn predict, one process | {sk['total_s']:.1f} | "
        f"{per_core(result['sklearn_rows_per_s'], 1)} |",
        "",
        f"- vs one process: {ratios['end_to_end_vs_one_process']:.2f}x end to end, "
        f"{ratios['stage_vs_one_process']:.2f}x scoring stage "
        f"(target {TARGETS['vs_one_process']}x)",
        f"- vs scikit-learn: {ratios['end_to_end_vs_sklearn']:.2f}x end to end, "
        f"{ratios['stage_vs_sklearn']:.2f}x scoring stage, one process "
        f"{ratios['one_process_vs_sklearn']:.2f}x (target {TARGETS['vs_sklearn']}x)",
        f"- scikit-learn's {sk['total_s']:.1f} s: load and read {sk['load_and_read_s']:.1f} s, "
        f"input {sk['input_s']:.1f} s, predict {sk['predict_s']:.1f} s, of which the feature "
        f"transforms {sk['transforms_s']:.1f} s and the trees the rest",
        f"- Spark start {result['spark_start_s']:.1f} s of the end to end "
        f"{spark['wall_s']:.1f} s; in the {stage:.1f} s stage the Python workers loaded the "
        f"model and scored for {m['timings']['python_scoring_s']:.1f} s and ran their tasks "
        f"(reading and writing included) for {m['timings']['python_tasks_s']:.1f} s, summed "
        f"over both cores (the same work took {single['total_s'] - single['load_and_read_s']:.1f}"
        f" s in one process)",
        f"- driver peak memory: Python {m['memory_mb']['driver_python_peak']:.0f} MB, JVM "
        f"{m['memory_mb']['driver_jvm_peak'] or 0:.0f} MB (target < {TARGETS['driver_peak_mb']} MB:"
        f" {'met' if peak < TARGETS['driver_peak_mb'] else 'NOT met'})",
        f"- load average after the run "
        f"{', '.join(f'{x:.1f}' for x in result['load_average'])} (2 cores, shared)",
    ]
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
