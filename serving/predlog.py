"""The prediction and actuals logs: JSON lines, each in the kernel before the response is sent.

A record is encoded (pydantic-core's JSON encoder) and appended with one `os.write` on an O_APPEND
descriptor, synchronously, before its response is sent (the service writes the records of a
micro-batch's requests in one `write`, before any of them is answered): once `write` returns
the line is in the kernel's page cache, so a SIGKILL of the worker right after loses nothing it
answered (a crash of the machine itself can still lose what the kernel had not written to disk). Appends of several processes to
one file (two releases of an environment, the stable one and its fallback) do not interleave: the
kernel positions and writes each one as a whole.

Files are created readable and writable by their owner only (0600). Rotation by size: before a
write, a file of `max_bytes` or more is renamed `<name>.1` (`.1` to `.2`, ... up to `keep`, the
oldest dropped), under an `fcntl.flock` on `<name>.lock` so that two processes never rotate the
same file twice; a process whose file was rotated by another (its descriptor's inode is no longer
the path's, or was dropped) reopens the path before it writes.

A writer looks at its file (fstat, then the path under the lock) only when its own appends since
the last look would fill it, once a second, or after it was idle for IDLE_S: a per-write fstat
cost ~2.5 us of the ~5 us an append took, and a look (five system calls) half the CPU of a
service's batched append under load when IDLE_S was 1 ms (a busy service appends every few ms).
A busy writer then notices another's rotation within a second (its lines in between land in
`<name>.1`, not lost; a file dropped in that second would take `keep` rotations by others in
it, 500 MiB by default); an idle one, the previous release rarely asked, before its next line.
With two writers a file can outgrow `max_bytes` by what the other wrote since its last look.

`path`: a file; None: standard output (the default when nothing is configured); OFF: nothing.
The two record formats (the contract with the monitoring job) are `prediction_record` and
`actual_records` below, documented in README ("Prediction and actuals logs").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic_core import to_json

OFF: Literal["off"] = "off"
MODE = 0o600
FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
PATH_CHECK_S = 1.0  # how often a busy writer looks at its file, to follow one moved by another
IDLE_S = 0.25  # a writer idle this long looks before it writes (see above)


def _open(path: Path) -> int:
    fd = os.open(path, FLAGS, MODE)
    with contextlib.suppress(OSError):  # a file created before by an older version: tighten it
        os.fchmod(fd, MODE)
    return fd


class JsonLinesLog:
    def __init__(
        self,
        path: Path | Literal["off"] | None,
        max_bytes: int = 100 * 2**20,
        keep: int = 5,
    ) -> None:
        self.path = path if isinstance(path, Path) else None
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self._lock_fd = -1
        self._checked = self._last = time.monotonic()
        self._room = self._written = 0  # the first append looks at the file
        if path == OFF:
            self._fd = -1
        elif self.path is None:
            self._fd = 1  # standard output
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _open(self.path)
            lock = self.path.with_name(self.path.name + ".lock")
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, MODE)

    @property
    def enabled(self) -> bool:
        return self._fd >= 0

    def append(self, data: bytes) -> None:
        """Append `data` (whole lines) in one write; it is in the kernel when this returns."""
        if self._fd < 0:
            return
        if self.path is not None:
            now = time.monotonic()
            if (
                self._written >= self._room
                or now - self._checked > PATH_CHECK_S
                or now - self._last > IDLE_S
            ):
                self._look(now)
            self._last = now
            self._written += len(data)
        n = os.write(self._fd, data)
        while n < len(data):  # a regular file takes it whole; a pipe (stdout) may take it in parts
            data = data[n:]
            n = os.write(self._fd, data)

    def _look(self, now: float) -> None:
        """Rotate or follow the file if needed; then how much room it has left."""
        self._checked = now
        self._follow(os.fstat(self._fd))
        self._room, self._written = self.max_bytes - os.fstat(self._fd).st_size, 0

    def _follow(self, mine: os.stat_result) -> None:
        """Rotate the file if it is full, or reopen the path if another process rotated it."""
        assert self.path is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            same = current is not None and (current.st_ino, current.st_dev) == (
                mine.st_ino,
                mine.st_dev,
            )
            if same and mine.st_size < self.max_bytes:
                return  # the periodic look-up: nothing moved
            if same and mine.st_size >= self.max_bytes:
                rotated = [
                    self.path.with_name(f"{self.path.name}.{i}") for i in range(self.keep + 1)
                ]
                for i in range(self.keep - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(rotated[i], rotated[i + 1])
                os.rename(self.path, rotated[1])
            old, self._fd = self._fd, _open(self.path)
            os.close(old)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def iso(at: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-12-04T14:34:48.123+00:00. The date and time of
    the second are formatted once per second (datetime's isoformat costs ~3 us a call)."""
    us = round(at * 1e6)
    second, fraction = divmod(us, 1_000_000)
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{fraction // 1000:03d}+00:00"


def prediction_record(
    at: float,
    request_id: str,
    model: str,
    release: str | None,
    routed_to: str | None,
    latency_ms: float,
    inputs: list[dict[str, Any]],
    outputs: dict[str, Any],
) -> bytes:
    """One line: the request's time (`at`, seconds since the epoch), ids, inputs and outputs."""
    return (
        to_json(
            {
                "event": "prediction",
                "time": iso(at),
                "request_id": request_id,
                "model": model,
                "release": release,
                "routed_to": routed_to,
                "fallback": routed_to is not None and routed_to != release,
                "latency_ms": round(latency_ms, 3),
                "inputs": inputs,
                "outputs": outputs,
            },
            fallback=str,
        )
        + b"\n"
    )


def actual_records(
    actuals: Iterable[tuple[str, float | int | str, datetime | None]],
    received_at: float,
    model: str,
    release: str | None,
) -> bytes:
    """One line per (request_id, actual, observed_at); observed_at None: received_at. A time
    without a timezone is taken as UTC."""
    received = iso(received_at)
    lines = []
    for request_id, actual, observed_at in actuals:
        if observed_at is not None and observed_at.tzinfo is None:
            observed_at = observed_at.replace(tzinfo=UTC)
        observed = (
            received
            if observed_at is None
            else observed_at.astimezone(UTC).isoformat(timespec="milliseconds")
        )
        lines.append(
            to_json(
                {
                    "event": "actual",
                    "request_id": request_id,
                    "actual": actual,
                    "observed_at": observed,
                    "received_at": received,
                    "model": model,
                    "release": release,
                }
            )
        )
    return b"".join(line + b"\n" for line in lines)
