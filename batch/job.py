"""One batch scoring job: input file -> OUT/predictions, OUT/rejects, OUT/manifest.json, OUT/_SUCCESS.

Everything is written into a hidden folder beside OUT and renamed to OUT at the very end, so a
reader sees either nothing or a complete job with its `_SUCCESS`: a job that fails is cleaned up,
and one killed midway leaves only that hidden folder (never OUT, never `_SUCCESS`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bentoml

from batch import rows, tasks
from batch import spark as spark_
from core.settings import Settings
from serving.runtime import NoModelError, ServedModel, load_served_model, serve_runtime

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class UsageError(ValueError):
    """Bad input from the user (exit 2): the message names the argument, file or column."""


@dataclass(frozen=True)
class Request:
    job_id: str
    data: Path
    out: Path
    master: str = "local[*]"
    key: str | None = None  # a column of the input to use as each row's id; else the row number


def input_format(data: Path) -> str:
    if not data.exists():
        raise UsageError(f"DATA={data}: no such file or folder")
    if data.is_dir():
        found = {FORMATS.get(p.suffix.lower()) for p in data.rglob("*") if p.is_file()} - {None}
        if len(found) != 1:
            raise UsageError(f"DATA={data}: a folder must hold only CSV or only Parquet files")
        return found.pop()  # type: ignore[return-value]  # None was removed above
    fmt = FORMATS.get(data.suffix.lower())
    if fmt is None:
        raise UsageError(f"DATA={data}: expected a .csv or .parquet file (or a folder of them)")
    return fmt


def fingerprint(data: Path) -> tuple[int, str]:
    """(bytes, sha256) of the input file, or of a folder's files in name order."""
    files = sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else [data]
    digest, size = hashlib.sha256(), 0
    for f in files:
        size += f.stat().st_size
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return size, digest.hexdigest()


def resolve_model(settings: Settings) -> tuple[ServedModel, Path]:
    """The model the service would serve (MODEL_TAG, else production) and its stored folder."""
    try:
        model = load_served_model(settings, Path(__file__).resolve().parent)
        return model, Path(bentoml.models.get(model.tag).path)
    except NoModelError as exc:
        raise UsageError(str(exc)) from None
    except bentoml.exceptions.NotFound:
        raise UsageError(f"model {settings.model_tag!r} is not in the store") from None


def staging_folder(out: Path, job_id: str) -> Path:
    return out.parent / f".{out.name}.{job_id}.tmp"


def _peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident memory of this process, or of `pid` (from /proc, Linux)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def run(request: Request, settings: Settings) -> dict[str, Any]:
    """Score `request.data` into `request.out`; return the manifest. Raises UsageError for bad
    input before anything is written."""
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out, data = request.out.resolve(), request.data.resolve()
    fmt = input_format(data)
    if out.exists():
        raise UsageError(f"OUT={request.out} exists: remove it or choose another folder")
    if blocking := next((p for p in out.parents if p.exists() and not p.is_dir()), None):
        raise UsageError(f"OUT={request.out}: {blocking} is a file, not a folder")
    model, folder = resolve_model(settings)
    model = pick_runtime(model, folder)
    size, sha256 = fingerprint(data)
    staging = staging_folder(out, request.job_id)
    staging.mkdir(parents=True)
    timings: dict[str, float] = {"prepare_s": time.perf_counter() - t0}
    try:
        t = time.perf_counter()
        spark = spark_.session(request.master)
        timings["spark_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        counts, jvm_peak, python_s = _score(spark, request, model, folder, data, fmt, staging)
        timings["score_and_write_s"] = time.perf_counter() - t
        # Summed over the Python workers (cores): loading the model and scoring, then the whole
        # tasks (reading and writing included); the rest of the stage is Spark's and the
        # workers' start.
        timings.update(python_s)
        manifest = {
            "job": request.job_id,
            "model": model.tag,
            "runtime": model.runtime,
            "input": {"path": str(data), "format": fmt, "bytes": size, "sha256": sha256},
            "output": {"predictions": str(out / "predictions"), "rejects": str(out / "rejects")},
            "rows": counts,
            "key": request.key or "row number",
            "master": request.master,
            "spark": spark.version,
            "started": started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "timings": {**timings, "total_s": time.perf_counter() - t0},
            "memory_mb": {"driver_python_peak": _peak_rss_mb(), "driver_jvm_peak": jvm_peak},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / "_SUCCESS").touch()
        os.rename(staging, out)  # atomic on one filesystem: OUT appears complete, or not at all
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def pick_runtime(model: ServedModel, folder: Path) -> ServedModel:
    """The runtime the service would serve from this folder (its choice, its golden check, its
    fallback), fixed for every worker: the manifest then names what scored every row."""
    loaded, ready = serve_runtime(model, folder)
    if not ready:
        raise spark_.RuntimeNotReady(
            f"no runtime of {model.tag} loads and reproduces its golden prediction "
            f"(tried {loaded.name}): the service would not be ready either"
        )
    return replace(model, runtime=loaded.name, forced=True)  # type: ignore[arg-type]


def _score(
    spark: Any,
    request: Request,
    model: ServedModel,
    folder: Path,
    data: Path,
    fmt: str,
    staging: Path,
) -> tuple[dict[str, int], float | None, dict[str, float]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        planned = tasks.plan(data, fmt, spark.sparkContext.defaultParallelism)
    except tasks.Unreadable as exc:
        raise UsageError(f"DATA={request.data}: {exc}") from None
    try:
        rows.check_columns(planned.columns, model.schema)
        rows.check_types(planned.types, model.schema)
    except (rows.MissingColumns, rows.UnusableColumns) as exc:
        raise UsageError(f"DATA={request.data}: {exc}") from None
    if request.key is not None and request.key not in planned.columns:
        raise UsageError(f"KEY={request.key}: not a column of DATA ({', '.join(planned.columns)})")
    if request.key is None:
        id_type = pa.int64()
    elif fmt == "csv":
        id_type = pa.string()
    else:
        id_type = (
            pq.read_schema(planned.tasks[0].path if planned.tasks else data).field(request.key).type
        )
    schemas = dict(
        zip(("predictions", "rejects"), tasks.output_schemas(model, id_type), strict=True)
    )
    for kind in schemas:
        (staging / kind).mkdir()
    done = []
    if planned.tasks:  # an archive no task fetched would be missed by a later job's tasks
        archive = spark_.ship_model(spark, folder, staging)
        done = spark_.score_tasks(
            spark, planned.tasks, model, archive, request.key, id_type, staging
        )
        (staging / archive).unlink(missing_ok=True)
    tasks.write_empty(staging, schemas)
    jvm = getattr(getattr(spark.sparkContext, "_gateway", None), "proc", None)
    counts = {k: sum(d["rows"][k] for d in done) for k in ("in", "scored", "rejected")}
    python = {
        "python_scoring_s": sum(d["scoring_s"] for d in done),
        "python_tasks_s": sum(d["task_s"] for d in done),
    }
    return counts, _peak_rss_mb(jvm.pid) if jvm is not None else None, python
