"""The store of batch jobs: one SQLite file, one row per job and its state.

States: submitted -> running -> succeeded | failed. A job whose process is gone while the store
still says submitted or running was killed: reading it marks it failed, with that reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACTIVE = ("submitted", "running")
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    model TEXT,
    data TEXT NOT NULL,
    out TEXT NOT NULL,
    pid INTEGER,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    message TEXT,
    rows TEXT,
    log TEXT
)
"""


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    model: str | None
    data: str
    out: str
    pid: int | None
    created: str
    updated: str
    message: str | None
    rows: dict[str, int] | None
    log: str | None


def new_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (a child not yet reaped) has ended all the same.
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class Store:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "jobs.sqlite"

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            db.execute(SCHEMA)
            with db:  # one transaction
                yield db
        finally:
            db.close()

    def log_path(self, job_id: str) -> Path:
        return self.folder / "logs" / f"{job_id}.log"

    def create(self, job_id: str, *, data: str, out: str, pid: int | None, state: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, state, data, out, pid, created, updated, log) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, state, data, out, pid, _now(), _now(), str(self.log_path(job_id))),
            )

    def update(self, job_id: str, **fields: Any) -> None:
        if "rows" in fields and fields["rows"] is not None:
            fields["rows"] = json.dumps(fields["rows"])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._db() as db:
            db.execute(
                f"UPDATE jobs SET {names}, updated = ? WHERE id = ?",  # column names are ours
                (*fields.values(), _now(), job_id),
            )

    def jobs(self, job_id: str | None = None) -> list[Job]:
        """Newest first; a job whose process died while active is marked failed on the way."""
        query = "SELECT * FROM jobs" + (" WHERE id = ?" if job_id else "") + " ORDER BY created"
        with self._db() as db:
            found = db.execute(query, (job_id,) if job_id else ()).fetchall()
        jobs = []
        for row in found:
            fields = dict(zip(row.keys(), tuple(row), strict=True))
            job = Job(**{**fields, "rows": json.loads(fields["rows"]) if fields["rows"] else None})
            if job.state in ACTIVE and not _alive(job.pid):
                why = "its process ended without a result (killed?); no _SUCCESS was written"
                self.update(job.id, state="failed", message=why)
                job = Job(**{**job.__dict__, "state": "failed", "message": why})
            jobs.append(job)
        return list(reversed(jobs))
