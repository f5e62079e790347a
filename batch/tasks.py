"""The scoring stage as tasks: the driver plans them from file metadata, each task does its own I/O.

The driver reads no data. For Parquet it reads the footers (files in path order, each file's row
count and row groups); for CSV it reads the lines once, to cut each file into byte ranges that
start and end on a line and to count each range's rows. Either way every task knows its file,
its rows and the number of its first row, so the ids are the input's row numbers from 1 (files in
path order, rows in file order) whatever order the tasks run in; with a key column, the key is
read instead. Spark only schedules the tasks (and retries a failed one): each task reads its
rows with pyarrow (or the csv module), runs the same bulk path as the one-process baseline
(`batch.score.score_frame`: the column-wise check, one runtime call a batch) and writes its own
`predictions/part-NNNNN.parquet` and `rejects/part-NNNNN.parquet`, each to a temporary name
first, then renamed: a retried task overwrites its part, never adds a second one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.score import (
    BATCH_ROWS,
    FIELD,
    ID,
    MODEL,
    PREDICTION,
    REASON,
    prediction_kind,
    probability_columns,
    score_frame,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pydantic import BaseModel

    from serving.runtime import LoadedRuntime, ServedModel

SKIPPED_PREFIXES = ("_", ".")  # hidden and marker files of a folder, as Spark skips them
MAX_TASK_ROWS = 4 * BATCH_ROWS  # a task's rows at most: a retry redoes little
MAX_TASK_BYTES = 64 << 20  # a CSV task's bytes at most: its lines are held in memory
SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv",)}


class Unreadable(ValueError):
    """An input file the planner cannot read (the message names it)."""


@dataclass(frozen=True)
class Task:
    """One task's share of the input: rows [start, stop) of a Parquet file, or the bytes
    [start, stop) of a CSV file (whole lines, after the header); `first` is the number of its
    first row in the whole input (from 1), `rows` how many rows it has."""

    index: int
    path: str
    fmt: str
    start: int
    stop: int
    first: int
    rows: int


@dataclass(frozen=True)
class Plan:
    columns: list[str]  # the input's columns (the first file's)
    tasks: list[Task]
    rows: int
    # Each column's types across the files (Parquet); none for CSV, whose every value is text.
    types: dict[str, list[pa.DataType]] = dataclasses.field(default_factory=dict)


def input_files(data: Path, fmt: str) -> list[Path]:
    """The files a job reads: DATA itself, or a folder's files of the format in path order."""
    if not data.is_dir():
        return [data]
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES[fmt]
        and not any(part.startswith(SKIPPED_PREFIXES) for part in p.relative_to(data).parts)
    )


def plan(data: Path, fmt: str, cores: int) -> Plan:
    """The tasks for DATA: at least 2 a core when there are rows enough (one slow task then
    leaves no core idle), each at most MAX_TASK_ROWS rows (Parquet) or the same share of the
    bytes (CSV). Reads footers (Parquet) or lines (CSV), never decodes a value. The columns are
    those every file has (in the first file's order), with each one's types across the files
    (Parquet): a file without a feature column, or with one of a type that never holds a valid
    value, is then refused before any task runs."""
    files = input_files(data, fmt)
    return _parquet_plan(files, cores) if fmt == "parquet" else _csv_plan(files, cores)


def _parquet_plan(files: list[Path], cores: int) -> Plan:
    import pyarrow.parquet as pq

    counts, names = [], []
    types: dict[str, list[pa.DataType]] = {}
    for f in files:
        try:
            meta = pq.read_metadata(f)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise Unreadable(f"{f}: not a readable Parquet file ({exc})") from None
        counts.append(meta.num_rows)
        schema = meta.schema.to_arrow_schema()
        names.append(schema.names)
        for column in schema:
            seen = types.setdefault(column.name, [])
            if column.type not in seen:
                seen.append(column.type)
    total = sum(counts)
    size = max(1, min(MAX_TASK_ROWS, math.ceil(total / (2 * cores))))
    tasks: list[Task] = []
    first = 1
    for f, n in zip(files, counts, strict=True):
        for start in range(0, n, size):
            stop = min(n, start + size)
            tasks.append(Task(len(tasks), str(f), "parquet", start, stop, first, stop - start))
            first += stop - start
    columns = _common(names)
    return Plan(columns, tasks, total, {c: types[c] for c in columns})


def _common(names: list[list[str]]) -> list[str]:
    """The columns every file has, in the first file's order."""
    return [c for c in names[0] if all(c in n for n in names[1:])] if names else []


def _csv_plan(files: list[Path], cores: int) -> Plan:
    """Byte ranges of whole lines, ~1/(2 x cores) of the bytes each. A line is a row unless it is
    empty (Spark's CSV reader skips those too); a quoted value never spans lines (Spark's default,
    multiLine=false)."""
    total_bytes = sum(f.stat().st_size for f in files)
    share = max(1, min(MAX_TASK_BYTES, math.ceil(total_bytes / (2 * cores))))
    tasks: list[Task] = []
    names: list[list[str]] = []
    first = 1
    for f in files:
        with f.open("rb") as fh:
            names.append(_header(fh.readline()))
            start = offset = fh.tell()
            rows = 0
            for line in fh:
                offset += len(line)
                rows += _is_row(line)
                if offset - start >= share and rows:
                    tasks.append(Task(len(tasks), str(f), "csv", start, offset, first, rows))
                    start, first, rows = offset, first + rows, 0
            if rows:
                tasks.append(Task(len(tasks), str(f), "csv", start, offset, first, rows))
                first += rows
    return Plan(_common(names), tasks, first - 1)


def _header(line: bytes) -> list[str]:
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    return next(csv.reader((text,)), []) if text else []


def _is_row(line: bytes) -> bool:
    return bool(line.rstrip(b"\r\n"))


def read(task: Task, columns: list[str]) -> Iterator[pa.Table]:
    """The task's rows, `columns` only, in tables of at most BATCH_ROWS rows."""
    if task.fmt == "parquet":
        yield from _read_parquet(task, columns)
    else:
        yield from _read_csv(task, columns)


def _read_parquet(task: Task, columns: list[str]) -> Iterator[pa.Table]:
    """Rows [start, stop) of the file: only the row groups that hold them are decoded, and of
    those only up to the last row wanted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(task.path) as pf:
        groups: list[int] = []
        at, skip = 0, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if at + n > task.start and at < task.stop:
                if not groups:
                    skip = task.start - at
                groups.append(g)
            at += n
        wanted = task.stop - task.start
        for batch in pf.iter_batches(BATCH_ROWS, row_groups=groups, columns=columns):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch = batch.slice(skip, wanted)
            skip, wanted = 0, wanted - batch.num_rows
            yield pa.Table.from_batches([batch])
            if wanted <= 0:
                return


def _read_csv(task: Task, columns: list[str]) -> Iterator[pa.Table]:
    """The lines of bytes [start, stop), as Spark's CSV reader gives them: every value text, an
    empty one null, a short row padded with nulls, a long one cut to the header."""
    import pyarrow as pa

    with open(task.path, "rb") as fh:
        names = _header(fh.readline())
        fh.seek(task.start)
        text = fh.read(task.stop - task.start).decode("utf-8", errors="replace")
    wanted = [names.index(c) for c in columns]
    lines = [line for line in text.split("\n") if line.rstrip("\r")]
    for i in range(0, len(lines), BATCH_ROWS):
        cells: list[list[str | None]] = [[] for _ in columns]
        for line in lines[i : i + BATCH_ROWS]:
            row = next(csv.reader((line.rstrip("\r"),)), [])
            for out, j in zip(cells, wanted, strict=True):
                out.append(row[j] if j < len(row) and row[j] != "" else None)
        yield pa.table([pa.array(c, pa.string()) for c in cells], names=columns)


def output_schemas(model: ServedModel, id_type: pa.DataType) -> tuple[pa.Schema, pa.Schema]:
    """(predictions, rejects): id, prediction, probability per class, model; id, field, reason,
    model."""
    import pyarrow as pa

    kind = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}
    predictions = pa.schema(
        [
            (ID, id_type),
            (PREDICTION, kind[prediction_kind(model)]),
            *[(c, pa.float64()) for c in probability_columns(model)],
            (MODEL, pa.string()),
        ]
    )
    rejects = pa.schema(
        [(ID, id_type), (FIELD, pa.string()), (REASON, pa.string()), (MODEL, pa.string())]
    )
    return predictions, rejects


def run(
    task: Task,
    model: ServedModel,
    runtime: LoadedRuntime,
    validator: type[BaseModel],
    key: str | None,
    id_type: pa.DataType,
    staging: Path,
) -> dict[str, Any]:
    """Score one task into staging/predictions and staging/rejects; return its counts and the
    seconds spent scoring (the rest of the task is reading and writing)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = list(model.schema.features)
    columns = list(dict.fromkeys([*features, *([key] if key else [])]))
    schemas = dict(zip(("predictions", "rejects"), output_schemas(model, id_type), strict=True))
    name = f"part-{task.index:05d}.parquet"
    temps = {k: staging / k / f".{name}.{os.getpid()}.tmp" for k in schemas}
    writers = {k: pq.ParquetWriter(temps[k], schemas[k]) for k in schemas}
    counts = {"in": 0, "scored": 0, "rejected": 0}
    scoring = 0.0
    try:
        for table in read(task, columns):
            n = table.num_rows
            frame = table.select(features).to_pandas()
            t = time.perf_counter()
            out = score_frame(frame, pd.Series(np.arange(n)), model, runtime, validator)
            scoring += time.perf_counter() - t
            if key is None:
                ids: Any = pa.array(np.arange(n, dtype=np.int64) + task.first + counts["in"])
            else:
                ids = table.column(key).combine_chunks()
            ok = out[REASON].isna().to_numpy()
            tag = pa.array([str(model.tag)] * n, pa.string())
            for kind, mask in (("predictions", ok), ("rejects", ~ok)):
                writers[kind].write_table(_part(out, ids, tag, mask, schemas[kind]))
            counts["in"] += n
            counts["scored"] += int(ok.sum())
            counts["rejected"] += int((~ok).sum())
        for kind, writer in writers.items():
            writer.close()
            os.replace(temps[kind], staging / kind / name)  # a retry overwrites its own part
    except BaseException:
        for kind, writer in writers.items():
            with contextlib.suppress(Exception):
                writer.close()
            temps[kind].unlink(missing_ok=True)
        raise
    return {"index": task.index, "rows": counts, "scoring_s": scoring}


def _part(out: pd.DataFrame, ids: Any, tag: Any, mask: Any, schema: pa.Schema) -> pa.Table:
    """The rows `mask` of one scored batch as a table of `schema`."""
    import numpy as np
    import pyarrow as pa

    at = pa.array(np.flatnonzero(mask))
    columns = []
    for field in schema:
        if field.name == ID:
            columns.append(ids.take(at))
        elif field.name == MODEL:
            columns.append(tag.take(at))
        elif field.name == PREDICTION and pa.types.is_string(field.type):
            values = out[PREDICTION].to_numpy()[mask]
            columns.append(pa.array([None if v is None else str(v) for v in values], field.type))
        else:
            columns.append(pa.array(out[field.name].to_numpy()[mask], field.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


def write_empty(staging: Path, schemas: dict[str, pa.Schema]) -> None:
    """An input without rows still gives readable (empty) predictions and rejects."""
    import pyarrow.parquet as pq

    for kind, schema in schemas.items():
        if not any((staging / kind).glob("part-*.parquet")):
            pq.write_table(schema.empty_table(), staging / kind / "part-00000.parquet")
