"""Spark for batch scoring: the session, the model shipped with the job, the partition function.

The model's folder (every runtime's file, as stored) goes to the executors as an archive with the
job (`SparkContext.addArchive`), never as a path on the driver's disk. Each Python worker loads it
once, with the service's own choice of runtime and golden check (`serving.runtime.serve_runtime`),
and keeps it for every partition it is given. Rows travel as Arrow batches (`mapInPandas`).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch import rows
from batch.score import (
    BATCH_ROWS,
    FIELD,
    ID,
    PREDICTION,
    REASON,
    prediction_kind,
    probability_columns,
)
from batch.score import score_frame as _score
from core.settings import ROOT
from serving.runtime import LoadedRuntime, ServedModel, serve_runtime

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

LOG4J = Path(__file__).with_name("log4j2.properties")
_LOADED: dict[str, LoadedRuntime] = {}  # per Python worker: archive name -> loaded runtime


class RuntimeNotReady(RuntimeError):
    pass


def session(master: str, app: str = "bentogate-score") -> SparkSession:
    """A Spark session whose Python workers run this interpreter with the project importable."""
    from pyspark.sql import SparkSession

    # PySpark 4.3 warns on any pandas 3; mapInPandas, all we use, is covered by tests/batch.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    # Executors must run the project's interpreter, not the system Python (REFERENCE.md 7.5).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    java_options = f"-Dlog4j2.configurationFile={LOG4J.as_uri()}"
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Our own _SUCCESS marks the whole job; Spark's per-folder markers would say less.
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # pandas 2 writes datetimes as Parquet TIMESTAMP(NANOS), which Spark refuses to read;
        # read as long, they are turned into timestamps by job.py (`nanos_columns`).
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, and no warning
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    return builder.getOrCreate()


def ship_model(spark: SparkSession, folder: Path, work: Path) -> str:
    """Send the model's folder with the job; return the name executors find it under."""
    name = f"model-{folder.parent.name}-{folder.name}"
    archive = shutil.make_archive(str(work / name), "zip", root_dir=folder)
    spark.sparkContext.addArchive(archive)
    return Path(archive).name


def _runtime(model: ServedModel, archive: str) -> LoadedRuntime:
    """The shipped model's runtime, loaded once per Python worker."""
    if archive not in _LOADED:
        from pyspark import SparkFiles

        loaded, ready = serve_runtime(model, Path(SparkFiles.get(archive)))
        if not ready:
            raise RuntimeNotReady(
                f"no runtime of {model.tag} loads and reproduces its golden prediction "
                f"(tried {loaded.name}); the service would not be ready either"
            )
        _LOADED[archive] = loaded
    return _LOADED[archive]


def output_schema(model: ServedModel, id_type: str) -> str:
    """The DDL of what every partition returns: id, prediction, probabilities, field, reason."""
    probabilities = "".join(f", `{c}` double" for c in probability_columns(model))
    return (
        f"`{ID}` {id_type}, `{PREDICTION}` {prediction_kind(model)}{probabilities}, "
        f"`{FIELD}` string, `{REASON}` string"
    )


def scorer(model: ServedModel, archive: str, key: str, python_s: Any = None) -> Any:
    """The mapInPandas function: Arrow batches of input rows -> batches of output rows.
    `python_s`, a Spark accumulator, adds up the seconds the workers spend loading and scoring
    (the rest of a stage is Spark's: reading, Arrow transfer, shuffle, writing)."""
    kind = prediction_kind(model)

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        t = time.perf_counter()
        runtime = _runtime(model, archive)
        validator = rows.batch_model(model.schema)
        spent = time.perf_counter() - t
        for frame in batches:
            t = time.perf_counter()
            out = _score(frame, frame[key], model, runtime, validator)
            if kind == "string":
                out[PREDICTION] = [None if p is None else str(p) for p in out[PREDICTION]]
            spent += time.perf_counter() - t
            yield out
        if python_s is not None:
            python_s.add(spent)

    return score_partition


def with_row_numbers(df: DataFrame, column: str) -> DataFrame:
    """Add `column`: each row's number in the input, from 1: files in path order, rows in file
    order. Spark packs file splits into partitions largest first, so numbering by partition
    alone would follow file sizes; here each split (file, byte offset) gets its place instead.
    One pass to count the rows of each split; no shuffle, no window."""
    from pyspark.sql import functions as F

    part = F.spark_partition_id()
    inside = F.monotonically_increasing_id() - F.shiftleft(part.cast("long"), 33)  # in partition
    path, start = F.col("_metadata.file_path"), F.col("_metadata.file_block_start")
    split = F.concat_ws("|", part.cast("string"), path, start.cast("string"))
    stats = (
        df.select(path.alias("path"), start.alias("start"), split.alias("split"), inside.alias("i"))
        .groupBy("path", "start", "split")
        .agg(F.count(F.lit(1)).alias("n"), F.min("i").alias("first"))
        .collect()
    )
    if not stats:
        return df.withColumn(column, F.lit(None).cast("long"))
    shift, total = {}, 0
    for row in sorted(stats, key=lambda r: (r["path"], r["start"])):
        shift[row["split"]], total = total - row["first"], total + row["n"]
    by_split = F.create_map(*[x for k, v in shift.items() for x in (F.lit(k), F.lit(v))])
    return df.withColumn(column, by_split[split] + inside + 1)
