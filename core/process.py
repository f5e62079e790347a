"""Run a BentoML server as a child process on loopback, and stop it cleanly.

BentoML's API workers run in their own sessions, so a server is stopped with SIGTERM to the
`bentoml serve` process and a wait, never SIGKILL to it alone (orphaned workers keep the port).
The server gets its own process group so that, if it ignores SIGTERM, the whole group goes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENTOML = str(Path(sys.executable).with_name("bentoml"))


class ServerError(RuntimeError):
    pass


# Ports for our servers come from below the kernel's ephemeral range. A port from bind(0) lies
# inside it, where every outgoing connection also takes its local port: in the seconds before the
# server binds it, some client's connection could take it ("Address already in use", seen in CI).
LOWEST_PORT = 10000
# "LOW-HIGH" narrows the range for this process and its children. The test session gives each
# xdist worker its own part: one worker never picks a port the other picked but has not bound yet.
PORTS_ENV = "BENTOGATE_PORTS"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_range() -> tuple[int, int]:
    """[low, high) where free ports are picked."""
    if spec := os.environ.get(PORTS_ENV):
        try:
            low, high = (int(x) for x in spec.split("-"))
        except ValueError:
            raise ServerError(
                f"{PORTS_ENV}={spec!r}: expected LOW-HIGH, e.g. 10000-20000"
            ) from None
        if not 1024 <= low < high <= 65536:
            raise ServerError(f"{PORTS_ENV}={spec!r}: expected 1024 <= LOW < HIGH <= 65536")
        return low, high
    return LOWEST_PORT, max(_ephemeral_low(), LOWEST_PORT + 1000)  # an odd range: at worst, racier


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_block(size: int, host: str = "127.0.0.1") -> int:
    """A first port such that it and the next `size - 1` are free now, outside the ephemeral
    range, picked at random so that parallel pickers (test workers, a developer's pipeline)
    rarely pick the same."""
    low, high = port_range()
    pick = random.SystemRandom()
    for _ in range(500):
        first = pick.randrange(low, high - size + 1)
        if all(_bindable(host, p) for p in range(first, first + size)):
            return first
    raise ServerError(f"no {size} free consecutive ports on {host} in {low}-{high - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    return free_block(1, host)


@dataclass
class Server:
    target: str  # a Bento tag, or a service import path such as "service:Predictor"
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None
    args: tuple[str, ...] = ()
    # Replaces `bentoml serve`; "{host}" and "{port}" are filled in. E.g. a uvicorn baseline.
    command: tuple[str, ...] | None = None
    prefix: tuple[str, ...] = ()  # e.g. ("taskset", "-c", "0") to pin the server to a core
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        log = self._log or subprocess.DEVNULL
        self.started = time.perf_counter()
        if self.command:
            cmd = [c.format(host=self.host, port=self.port) for c in self.command]
        else:
            cmd = [BENTOML, "serve", self.target, "--host", self.host, "--port", str(self.port)]
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **self.env}
        if "BENTOML_HOME" in env:  # the server may run elsewhere (cwd): a relative home would move
            env["BENTOML_HOME"] = str(Path(env["BENTOML_HOME"]).resolve())
        self.proc = subprocess.Popen(
            [*self.prefix, *cmd, *self.args],
            cwd=self.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 60.0, not_ready_grace: float | None = None) -> float:
        """Poll /readyz until 200; return seconds from start. Raise if it exits or times out, or,
        with `not_ready_grace`, if it has answered "not ready" for that long: the service decides
        readiness once its model is loaded, so a 503 that lasts means it never will be ready."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        first_503: float | None = None
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(
                        f"server for {self.target} exited with {self.proc.returncode}"
                        f"{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    status = client.get(f"{self.url}/readyz").status_code
                    if status == 200:
                        return time.perf_counter() - self.started
                    first_503 = first_503 or time.monotonic()
                    if (
                        not_ready_grace is not None
                        and time.monotonic() - first_503 > not_ready_grace
                    ):
                        raise ServerError(
                            f"{self.target} is up but answers /readyz {status} "
                            f"(for {not_ready_grace:g}s): its model failed the readiness check"
                            f"{self._log_tail()}"
                        )
                time.sleep(0.05)
        raise ServerError(
            f"server for {self.target} not ready within {timeout:.0f}s{self._log_tail()}"
        )

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its descendants (workers included)."""
        if self.proc is None:
            return 0
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        total, todo = 0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return "; last log lines:\n" + "\n".join(self.log_path.read_text().splitlines()[-15:])
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        try:
            self._terminate(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _terminate(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Workers that outlived the arbiter share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)


@contextlib.contextmanager
def serving(target: str, *, ready_timeout: float = 120.0, **kwargs: object) -> Iterator[Server]:
    server = Server(target, **kwargs).start()  # type: ignore[arg-type]
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()
