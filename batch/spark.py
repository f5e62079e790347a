"""Spark for batch scoring: the session, the model shipped with the job, the tasks run.

Spark only schedules: the driver plans tasks from the input's metadata (batch/tasks.py), one
partition each, and every task reads, scores and writes its own rows in its Python worker; no
row goes through the JVM. The model's folder (every runtime's file, as stored) goes to the
executors as an archive with the job (`SparkContext.addArchive`), never as a path on the driver's
disk. Each Python worker loads it once, with the service's own choice of runtime and golden check
(`serving.runtime.serve_runtime`), and keeps it for every task it is given.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch import rows, tasks
from batch.tasks import Task
from core.settings import ROOT
from serving.runtime import LoadedRuntime, ServedModel, serve_runtime

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

LOG4J = Path(__file__).with_name("log4j2.properties")
_LOADED: dict[str, LoadedRuntime] = {}  # per Python worker: archive name -> loaded runtime


class RuntimeNotReady(RuntimeError):
    pass


def session(master: str, app: str = "bentogate-score") -> SparkSession:
    """A Spark session whose Python workers run this interpreter with the project importable."""
    from pyspark.sql import SparkSession

    # PySpark 4.3 warns on any pandas 3; no row goes through Spark's pandas code (tasks.py).
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
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
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


def score_tasks(
    spark: SparkSession,
    planned: list[Task],
    model: ServedModel,
    archive: str,
    key: str | None,
    id_type: pa.DataType,
    staging: Path,
) -> list[dict[str, Any]]:
    """Run the planned tasks, one Spark partition each: Spark schedules them (and retries a failed
    one); each reads, scores and writes its own rows (batch/tasks.py) and returns only its counts,
    the seconds its Python worker spent loading the model and scoring, and its whole time."""
    shipped = str(staging)

    def score_partition(given: Iterable[Task]) -> Iterator[dict[str, Any]]:
        t = time.perf_counter()
        runtime = _runtime(model, archive)
        validator = rows.batch_model(model.schema)
        loading = time.perf_counter() - t
        for task in given:
            done = tasks.run(task, model, runtime, validator, key, id_type, Path(shipped))
            done["scoring_s"] += loading
            done["task_s"] = time.perf_counter() - t  # reading and writing included
            loading, t = 0.0, time.perf_counter()
            yield done

    if not planned:
        return []
    rdd = spark.sparkContext.parallelize(planned, len(planned))
    return rdd.mapPartitions(score_partition).collect()
