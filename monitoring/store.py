"""The monitoring store: one DuckDB database per environment and model, holding the prediction
log (one row per record), the actuals, and how far each log file has been read.

Ingestion is incremental: a log file is known by its device and inode, so a rotated file
(`predictions.jsonl` renamed to `predictions.jsonl.1`) keeps its offset under its new name and
only lines appended since the last run are read; only complete lines are taken (a line being
written is read next time). A file shorter than its offset was truncated: it is read again.

A classifier's record keeps its class probabilities (`outputs.probabilities[i]`, a {class: p}
object in the model's class order) in `proba`; a regressor's is NULL.

Join key of a record (what an actual names as its `request_id`): the request id for a
single-record request, `<request id>#<i>` for record i (from 0) of a multi-record request.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

PREDICTIONS = "predictions.jsonl"
ACTUALS = "actuals.jsonl"
LOCK_WAIT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    device UBIGINT, inode UBIGINT, kind VARCHAR, path VARCHAR, "offset" UBIGINT,
    PRIMARY KEY (device, inode, kind));
CREATE TABLE IF NOT EXISTS predictions (
    key VARCHAR, request_id VARCHAR, idx INTEGER, n INTEGER, time TIMESTAMPTZ, model VARCHAR,
    release VARCHAR, routed_to VARCHAR, fallback BOOLEAN, latency_ms DOUBLE, input JSON,
    prediction JSON, proba JSON);
-- A store created before class probabilities were kept gets the column (NULL in its old rows).
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS proba JSON;
CREATE TABLE IF NOT EXISTS actuals (
    key VARCHAR, actual JSON, observed_at TIMESTAMPTZ, received_at TIMESTAMPTZ, model VARCHAR,
    release VARCHAR, source VARCHAR);
CREATE TABLE IF NOT EXISTS access (
    time TIMESTAMPTZ, request_id VARCHAR, uri VARCHAR, status INTEGER, routed_to VARCHAR,
    answered_by VARCHAR);
CREATE TABLE IF NOT EXISTS unreadable (kind VARCHAR, path VARCHAR, lines UBIGINT, seen TIMESTAMPTZ);
"""

# Fields of the logs (missing ones read as NULL: `release`, `routed_to`, `fallback` are recent).
PREDICTION_COLUMNS = {
    "event": "VARCHAR",
    "time": "VARCHAR",
    "request_id": "VARCHAR",
    "model": "VARCHAR",
    "release": "VARCHAR",
    "routed_to": "VARCHAR",
    "fallback": "BOOLEAN",
    "latency_ms": "DOUBLE",
    "inputs": "JSON[]",
    "outputs": "JSON",
}
ACTUAL_COLUMNS = {
    "event": "VARCHAR",
    "request_id": "VARCHAR",
    "actual": "JSON",
    "observed_at": "VARCHAR",
    "received_at": "VARCHAR",
    "model": "VARCHAR",
    "release": "VARCHAR",
}

INSERT_PREDICTIONS = """
INSERT INTO predictions
SELECT CASE WHEN n = 1 THEN request_id ELSE request_id || '#' || idx END,
       request_id, idx, n, time, model, release, routed_to, fallback, latency_ms, input,
       prediction, proba
FROM (
    SELECT request_id, len(inputs) AS n, TRY_CAST(time AS TIMESTAMPTZ) AS time, model, release,
           routed_to, coalesce(fallback, false) AS fallback, latency_ms,
           unnest(inputs) AS input,
           unnest(generate_series(0, len(inputs) - 1)) AS idx,
           unnest(CAST(json_extract(outputs, '$.predictions') AS JSON[])) AS prediction,
           -- a classifier's {class: probability} per record; a regressor has none: NULL
           unnest(CAST(json_extract(outputs, '$.probabilities') AS JSON[])) AS proba
    FROM read_json(?, format = 'newline_delimited', ignore_errors = true,
                   columns = {columns})
    WHERE event = 'prediction' AND request_id IS NOT NULL AND len(inputs) > 0
)
"""

# The router's access log (deploy/nginx.py, one JSON line per request): the errors the
# prediction log cannot hold, since it logs answered predictions only.
ACCESS_COLUMNS = {
    "time": "VARCHAR",
    "request_id": "VARCHAR",
    "uri": "VARCHAR",
    "status": "INTEGER",
    "routed_to": "VARCHAR",
    "answered_by": "VARCHAR",
}
INSERT_ACCESS = """
INSERT INTO access
SELECT TRY_CAST(time AS TIMESTAMPTZ), request_id, uri, status, nullif(routed_to, ''),
       nullif(answered_by, '')
FROM read_json(?, format = 'newline_delimited', ignore_errors = true, columns = {columns})
WHERE status IS NOT NULL AND uri LIKE '/predict%'
"""

INSERT_ACTUALS = """
INSERT INTO actuals
SELECT request_id, actual, TRY_CAST(observed_at AS TIMESTAMPTZ),
       coalesce(TRY_CAST(received_at AS TIMESTAMPTZ), now()), model, release, 'log'
FROM read_json(?, format = 'newline_delimited', ignore_errors = true, columns = {columns})
WHERE request_id IS NOT NULL AND actual IS NOT NULL AND coalesce(event, 'actual') = 'actual'
"""


def _columns(spec: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in spec.items()) + "}"


@dataclass(frozen=True)
class Ingested:
    files: int  # files with new lines
    lines: int  # complete new lines read
    rows: int  # rows stored (prediction records, or actuals)
    unreadable: int  # lines that were not a record of their log


def database(monitor_dir: Path, environment: str, model: str) -> Path:
    return monitor_dir / f"{environment}-{model}.duckdb"


@contextlib.contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store, created if missing. One process writes at a time (DuckDB's file lock): another
    `make monitor` or `make feedback` is waited for, at most LOCK_WAIT_S."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only and path.exists())
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        os.chmod(path, 0o600)  # inputs and outcomes: its owner's only
        if not read_only:
            con.execute(SCHEMA)
        yield con
    finally:
        con.close()


def rotated(directory: Path, name: str) -> list[Path]:
    """`name` and its rotations `name.1..N`, oldest first (the highest number is the oldest)."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)$")
    numbered = []
    for p in directory.glob(f"{name}.*"):
        if m := pattern.match(p.name):
            numbered.append((int(m[1]), p))
    files = [p for _, p in sorted(numbered, reverse=True)]
    if (directory / name).is_file():
        files.append(directory / name)
    return files


def _complete_lines(src: Any, start: int, end: int, dest: Path) -> tuple[int, int]:
    """Copy bytes [start, end) of `src` up to their last newline into `dest`; return (the new
    offset, the number of lines copied)."""
    src.seek(start)
    copied, lines, last_newline = 0, 0, -1
    with open(dest, "wb") as out:
        remaining = end - start
        while remaining > 0:
            block = src.read(min(8 << 20, remaining))
            if not block:
                break
            out.write(block)
            nl = block.rfind(b"\n")
            count = block.count(b"\n")
            if nl >= 0:
                last_newline = copied + nl
                lines += count
            copied += len(block)
            remaining -= len(block)
        out.truncate(last_newline + 1)
    return start + last_newline + 1, lines


def _ingest(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], kind: str, insert: str, counting: str
) -> Ingested:
    totals = [0, 0, 0, 0]
    with tempfile.TemporaryDirectory(prefix="bentogate-monitor-") as scratch:
        chunk = Path(scratch) / "chunk.jsonl"
        for path in files:
            try:
                src = open(path, "rb")  # noqa: SIM115 (closed below; renamed files stay readable)
            except FileNotFoundError:  # rotated away between listing and opening: next run
                continue
            with src:
                st = os.fstat(src.fileno())
                row = con.execute(
                    'SELECT "offset" FROM files WHERE device = ? AND inode = ? AND kind = ?',
                    [st.st_dev, st.st_ino, kind],
                ).fetchone()
                start = int(row[0]) if row else 0
                if start > st.st_size:  # truncated in place: read again from the start
                    start = 0
                if start == st.st_size:
                    continue
                end, lines = _complete_lines(src, start, st.st_size, chunk)
            if end == start:
                continue
            con.execute("BEGIN")
            before = con.execute(counting).fetchone()
            con.execute(insert, [str(chunk)])
            after = con.execute(counting).fetchone()
            assert before is not None and after is not None
            bad = lines - (int(after[1]) - int(before[1]))  # lines that were no record of it
            if bad:
                con.execute(
                    "INSERT INTO unreadable VALUES (?, ?, ?, now())", [kind, str(path), bad]
                )
            con.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                [st.st_dev, st.st_ino, kind, str(path), end],
            )
            con.execute("COMMIT")
            totals[0] += 1
            totals[1] += lines
            totals[2] += int(after[0]) - int(before[0])
            totals[3] += bad
    return Ingested(*totals)


def ingest_predictions(con: duckdb.DuckDBPyConnection, log_dir: Path) -> Ingested:
    insert = INSERT_PREDICTIONS.replace("{columns}", _columns(PREDICTION_COLUMNS))
    counting = "SELECT count(*), count(*) FILTER (WHERE idx = 0) FROM predictions"
    return _ingest(con, rotated(log_dir, PREDICTIONS), "predictions", insert, counting)


def ingest_actuals(con: duckdb.DuckDBPyConnection, log_dir: Path) -> Ingested:
    insert = INSERT_ACTUALS.replace("{columns}", _columns(ACTUAL_COLUMNS))
    counting = "SELECT count(*), count(*) FROM actuals"
    return _ingest(con, rotated(log_dir, ACTUALS), "actuals", insert, counting)


def ingest_access(con: duckdb.DuckDBPyConnection, router_logs: Path) -> Ingested:
    """The router's access log and its rotations: only /predict lines are kept."""
    insert = INSERT_ACCESS.replace("{columns}", _columns(ACCESS_COLUMNS))
    counting = "SELECT count(*), count(*) FROM access"
    return _ingest(con, rotated(router_logs, "access.log"), "access", insert, counting)


def add_actuals(
    con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[str, str, str]], model: str, source: str
) -> int:
    """Store (key, actual as JSON text, observed_at ISO) rows in one transaction, durably."""
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO actuals VALUES (?, CAST(? AS JSON), CAST(? AS TIMESTAMPTZ), now(), ?, NULL, ?)",
        [(key, actual, observed, model, source) for key, actual, observed in rows],
    )
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    return len(rows)
