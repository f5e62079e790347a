"""Structured prediction log: one JSON line per request, for a log shipper or a drift job.

Records go through a queue to a background thread, so logging never blocks the event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOGGER_NAME = "bentogate.predictions"


def setup(path: Path | None) -> logging.Logger:
    """JSON lines to stdout, or appended to `path` when given."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers:
        return logger
    target: logging.Handler
    if path is None:
        target = logging.StreamHandler(sys.stdout)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(logging.Formatter("%(message)s"))
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, target)
    listener.start()
    atexit.register(listener.stop)
    logger.addHandler(logging.handlers.QueueHandler(q))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def record(
    request_id: str,
    model: str,
    inputs: list[dict[str, Any]],
    outputs: dict[str, Any],
    latency_ms: float,
) -> str:
    return json.dumps(
        {
            "event": "prediction",
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "model": model,
            "latency_ms": round(latency_ms, 3),
            "inputs": inputs,
            "outputs": outputs,
        },
        default=str,
    )
