"""`make feedback FILE=actuals.csv`: actuals from a file, validated whole before any row is
stored. Columns: request_id (the join key: the request id, or `<request id>#<i>` for record i of
a multi-record request), actual (a number for a regression model, a class label otherwise),
observed_at (ISO 8601 time of the outcome). An actual must be one of the model, as POST /feedback
requires (models/actuals.py): a regressor's number within its bound, a classifier's class."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from datetime import datetime
from pathlib import Path

from models.actuals import ActualRule

COLUMNS = ("request_id", "actual", "observed_at")
MAX_KEY = 200


class FeedbackError(ValueError):
    """A problem in the file: the message names its line and column."""


def read(path: Path, rule: ActualRule) -> list[tuple[str, str, str]]:
    """(key, actual as JSON text, observed_at ISO) per row; FeedbackError naming the first bad
    line and column."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeedbackError(f"{path}: cannot read: {exc.strerror}") from None
    # Decoded whole, so a bad byte's offset is in the file and names its line; Excel's "CSV UTF-8"
    # starts with a byte order mark, which would otherwise be part of the first column's name.
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FeedbackError(
            f"{path}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason})"
        ) from None
    rows = []
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            raise FeedbackError(f"{path}:1: not a CSV file: {exc}") from None
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise FeedbackError(
                f"{path}:1: missing column(s) {', '.join(missing)} (expected: {', '.join(COLUMNS)})"
            )
        try:
            for row in reader:
                line = reader.line_num
                key = (row.get("request_id") or "").strip()
                if not key or len(key) > MAX_KEY:
                    raise FeedbackError(
                        f"{path}:{line}: column 'request_id': "
                        + ("empty" if not key else f"longer than {MAX_KEY} characters")
                    )
                raw = (row.get("actual") or "").strip()
                if rule.task == "regression":
                    try:
                        value = float(raw)
                    except ValueError:
                        raise FeedbackError(
                            f"{path}:{line}: column 'actual': {raw[:40]!r} is not a number"
                        ) from None
                    if not math.isfinite(value):
                        raise FeedbackError(
                            f"{path}:{line}: column 'actual': {raw[:40]!r} is not a finite number"
                        )
                    problem = rule.problem(value)
                    actual = json.dumps(value)
                elif raw:
                    problem = rule.problem(raw)
                    actual = json.dumps(raw)
                else:
                    raise FeedbackError(f"{path}:{line}: column 'actual': empty")
                if problem is not None:
                    raise FeedbackError(f"{path}:{line}: column 'actual': {problem}")
                when = (row.get("observed_at") or "").strip()
                try:
                    at = datetime.fromisoformat(when.replace("Z", "+00:00"))
                except ValueError:
                    raise FeedbackError(
                        f"{path}:{line}: column 'observed_at': {when[:40]!r} is not an ISO 8601 "
                        "time (e.g. 2026-12-04T14:00:00+00:00)"
                    ) from None
                if at.tzinfo is None:
                    raise FeedbackError(
                        f"{path}:{line}: column 'observed_at': {when!r} has no time zone"
                    )
                rows.append((key, actual, at.isoformat()))
        except csv.Error as exc:
            raise FeedbackError(f"{path}:{reader.line_num}: not readable as CSV: {exc}") from None
    if not rows:  # a header alone is almost surely the wrong file (or an export that failed)
        raise FeedbackError(f"{path}: no rows")
    return rows
