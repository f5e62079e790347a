"""Writers of the prediction log and actuals formats, fast: the benchmark's 1M predictions and
the tests' logs. Independent of the service's writer (serving/predlog.py) on purpose: these are
the formats as documented, which the store must read whoever wrote them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def prediction_line(
    request_id: str,
    at: datetime,
    model: str,
    inputs: Sequence[dict[str, Any]],
    predictions: Sequence[Any],
    latency_ms: float,
    release: str | None = None,
    fallback: bool | None = None,
    probabilities: Sequence[dict[str, float]] | None = None,
) -> str:
    """A prediction log line; a classifier's has `probabilities`, one {class: p} per record."""
    rec: dict[str, Any] = {"event": "prediction", "time": iso(at), "request_id": request_id}
    rec["model"] = model
    if release is not None:
        rec["release"] = release
        rec["routed_to"] = release
    if fallback is not None:
        rec["fallback"] = fallback
    rec["latency_ms"] = latency_ms
    rec["inputs"] = list(inputs)
    rec["outputs"] = {"predictions": list(predictions)}
    if probabilities is not None:
        rec["outputs"]["probabilities"] = list(probabilities)
    return json.dumps(rec, separators=(",", ":"))


def actual_line(key: str, actual: Any, observed: datetime, model: str | None = None) -> str:
    rec: dict[str, Any] = {"event": "actual", "request_id": key, "actual": actual}
    rec["observed_at"] = iso(observed)
    rec["received_at"] = iso(observed + timedelta(minutes=5))
    if model is not None:
        rec["model"] = model
    return json.dumps(rec, separators=(",", ":"))


def write_lines(path: Path, lines: Sequence[str], mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))


def write_fast(
    path: Path,
    *,
    count: int,
    model: str,
    release: str | None,
    encoded_inputs: Sequence[str],
    predictions: Sequence[float],
    start: datetime,
    span_s: float,
    prefix: str,
) -> None:
    """`count` single-record predictions cycling through pre-encoded input records, spread evenly
    over `span_s` seconds from `start`: the benchmark's volume, at several hundred thousand lines
    a second. Request ids are `<prefix><i>`."""
    rel = f'"release":"{release}","routed_to":"{release}","fallback":false,' if release else ""
    n = len(encoded_inputs)
    step = span_s / max(count, 1)
    base = start.timestamp()
    with open(path, "a", encoding="utf-8") as f:
        batch = []
        for i in range(count):
            at = datetime.fromtimestamp(base + i * step, UTC).isoformat(timespec="milliseconds")
            batch.append(
                f'{{"event":"prediction","time":"{at}","request_id":"{prefix}{i}",'
                f'"model":"{model}",{rel}"latency_ms":{1 + (i % 97) / 10},'
                f'"inputs":[{encoded_inputs[i % n]}],'
                f'"outputs":{{"predictions":[{predictions[i % n]!r}]}}}}\n'
            )
            if len(batch) >= 50_000:
                f.write("".join(batch))
                batch = []
        f.write("".join(batch))
