"""The `local` deploy target: releases run as background services on this host, behind a stable
address per environment and model (a router on the model's port in that environment, see
router.py and addresses.py). Models side by side never share an address, a history or a rollback.

A new release starts beside the live one on a port of its own and must pass readiness and the
smoke test there; only then does the route switch to it, the smoke test run again through the
stable address, and the old release stop, after a drain period. A release that fails any check
never takes traffic (or is switched back at once) and the previous one keeps serving.

State, per environment and model, in <deploy_dir>/<env>/<model>/: route.json (what the router
serves), history.json (every release of that model and what became of it), router.json, logs/ (one
log per release), predictions.jsonl (the prediction log of every release).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.process import Server, ServerError, free_port
from core.settings import ROOT
from deploy import smoke
from deploy.config import Environment

LIVE, SUPERSEDED, FAILED, ROLLED_BACK, RESTORED, STOPPED = (
    "live",
    "superseded",
    "failed",
    "rolled_back",
    "restored",
    "stopped",
)


class DeployError(RuntimeError):
    """The release did not go live; the previous release keeps serving."""


class UsageError(RuntimeError):
    """Nothing was changed: bad arguments or state (no such Bento, nothing to roll back to)."""


@dataclass
class Release:
    id: str
    bento: str
    model_tag: str | None
    port: int
    pid: int | None = None
    pid_start: int | None = None
    status: str = "starting"
    reason: str = ""
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    approved_by: str | None = None
    rollback_of: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---- processes we started, found again later by pid and start time (pids get reused) ----------


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that exited
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and _start_time(pid) == start


def _stop(pid: int | None, start: int | None, timeout: float = 20.0) -> None:
    """SIGTERM the process (a `bentoml serve` arbiter or a router), wait, then its whole group:
    BentoML's workers outlive an arbiter killed alone and keep the port."""
    if not _alive(pid, start):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    sig = signal.SIGKILL if _alive(pid, start) else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _live(history: list[Release]) -> Release | None:
    return next((r for r in reversed(history) if r.status == LIVE), None)


# ---- the target ------------------------------------------------------------------------------


class LocalTarget:
    """One model in one environment: its releases, its router, its history."""

    def __init__(
        self,
        env_name: str,
        env: Environment,
        deploy_dir: Path,
        model: str,
        port: int | None = None,
        log=print,
        state_dir: Path | None = None,
    ) -> None:
        assert env.local is not None
        self.env_name, self.model = env_name, model
        self.name = f"{env_name}/{model}"  # in messages
        self.cfg = env.local
        self.port = port if port is not None else env.local.port
        self.dir = state_dir or deploy_dir / env_name / model
        self.log = log

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    # -- state --
    def history(self) -> list[Release]:
        path = self.dir / "history.json"
        return [Release(**r) for r in json.loads(path.read_text())] if path.exists() else []

    def _save(self, releases: list[Release]) -> None:
        _write_json(self.dir / "history.json", [asdict(r) for r in releases])

    def live(self) -> Release | None:
        return _live(self.history())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One deploy, rollback or down per environment at a time."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"[{self.name}] another deploy is in progress; waiting for it")
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- router --
    def _router(self) -> dict[str, Any] | None:
        path = self.dir / "router.json"
        info = json.loads(path.read_text()) if path.exists() else None
        return info if info and _alive(info["pid"], info["start"]) else None

    def _ensure_router(self) -> None:
        info = self._router()
        if info and info["port"] == self.port:
            return
        if info:  # the configured port changed
            _stop(info["pid"], info["start"])
        if not _port_free(self.cfg.host, self.port):
            raise UsageError(
                f"{self.name}: port {self.port} on {self.cfg.host} is taken by another program;"
                f" free it, or change the port of {self.env_name} in deploy/config.yaml or"
                f" {self.model}'s deploy.port_offset in models/{self.model}/config.yaml"
            )
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "logs" / "router.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "deploy.router", "--host", self.cfg.host),
                    *("--port", str(self.port), "--route", str(self.dir / "route.json")),
                    *("--env-name", self.env_name, "--model", self.model),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        start = None
        while start is None and proc.poll() is None:
            start = _start_time(proc.pid)
        _write_json(self.dir / "router.json", {"pid": proc.pid, "start": start, "port": self.port})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeployError(f"{self.name}: the router exited; see {self.dir}/logs/router.log")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/readyz", timeout=1)
                return
            time.sleep(0.05)
        raise DeployError(f"{self.name}: the router did not start listening on {self.url}")

    def _route(self, release: Release | None) -> None:
        path = self.dir / "route.json"
        if release is None:
            path.unlink(missing_ok=True)
            return
        _write_json(path, {"release": release.id, "url": release.url, "bento": release.bento})

    def _wait_switched(self, release_id: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.headers.get("x-bentogate-release") == release_id:
                    return
            time.sleep(0.05)
        raise DeployError(f"{self.name}: the router did not switch to {release_id}")

    # -- operations --
    def deploy(
        self,
        bento: str,
        model_tag: str | None,
        *,
        approved_by: str | None = None,
        rollback_of: str | None = None,
    ) -> Release:
        with self._locked():
            return self._deploy(bento, model_tag, approved_by, rollback_of)

    def _deploy(
        self, bento: str, model_tag: str | None, approved_by: str | None, rollback_of: str | None
    ) -> Release:
        if model_tag is None or model_tag.split(":")[0] != self.model:
            raise UsageError(
                f"{self.name}: {bento} serves {model_tag or 'no known model'}, not {self.model!r}:"
                " each model has its own address and history"
            )
        history = self.history()
        previous = _live(history)  # an entry of `history`: updating it updates what is saved
        release = Release(
            id=f"r{len(history) + 1:04d}",
            bento=bento,
            model_tag=model_tag,
            port=free_port(self.cfg.host),
            approved_by=approved_by,
            rollback_of=rollback_of,
        )
        history.append(release)
        self._save(history)
        self._ensure_router()
        beside = f" beside {previous.id}" if previous else ""
        self.log(f"[{self.name}] {release.id}: starting {bento}{beside}")
        server = Server(
            bento,
            port=release.port,
            host=self.cfg.host,
            cwd=self.dir,
            log_path=self.dir / "logs" / f"{release.id}.log",
            env={"BENTOGATE_PREDICTION_LOG": str(self.dir / "predictions.jsonl")},
        ).start()
        assert server.proc is not None
        release.pid, release.pid_start = server.proc.pid, _start_time(server.proc.pid)
        self._save(history)

        def fail(reason: str) -> DeployError:
            _stop(release.pid, release.pid_start)
            release.status, release.reason = FAILED, reason
            self._save(history)
            kept = (
                f"{previous.id} ({previous.bento}) keeps serving" if previous else "nothing serves"
            )
            return DeployError(f"{self.name}: {release.id} not released: {reason}; {kept}")

        try:
            took = server.wait_ready(self.cfg.ready_timeout_s, self.cfg.not_ready_grace_s)
        except ServerError as exc:
            raise fail(f"readiness: {exc}") from None
        self.log(f"[{self.name}] {release.id}: ready in {took:.1f}s at {release.url}")
        checks = smoke.smoke(release.url, model_tag)
        if not smoke.passed(checks):
            raise fail(f"smoke test on its own port: {smoke.describe(checks)}")

        self._route(release)
        try:
            self._wait_switched(release.id)
            checks = smoke.smoke(self.url, model_tag)
            if not smoke.passed(checks):
                raise DeployError(f"smoke test through {self.url}: {smoke.describe(checks)}")
        except DeployError as exc:
            self._route(previous)  # switch straight back: the old release is still running
            if previous:
                self._wait_switched(previous.id)
            raise fail(f"{exc}; switched back") from None

        release.status = LIVE
        self._save(history)
        if previous:
            time.sleep(self.cfg.drain_s)  # requests in flight on the old release finish
            _stop(previous.pid, previous.pid_start)
            previous.status = SUPERSEDED if rollback_of is None else ROLLED_BACK
            self._save(history)
        self.log(f"[{self.name}] {release.id}: live at {self.url} ({bento})")
        return release

    def rollback_target(self) -> tuple[Release, Release]:
        """(live release, the release before it that was live and is not already restored)."""
        history = self.history()
        live = _live(history)
        if live is None:
            raise UsageError(f"{self.name}: no live release to roll back")
        # Only this model's releases (a history from before models had their own addresses may
        # hold another model's): a rollback never switches models.
        candidates = [
            r
            for r in history
            if r.status == SUPERSEDED
            and r.bento != live.bento
            and (r.model_tag or "").split(":")[0] == self.model
        ]
        if not candidates:
            raise UsageError(f"{self.name}: no earlier release to roll back to")
        return live, candidates[-1]

    def rollback(self) -> Release:
        with self._locked():
            live, target = self.rollback_target()
            self.log(f"[{self.name}] rolling back {live.id} ({live.bento}) to {target.bento}")
            release = self._deploy(target.bento, target.model_tag, None, rollback_of=live.id)
            history = self.history()
            for r in history:
                if r.id == target.id:
                    r.status = RESTORED
            self._save(history)
            return release

    def down(self) -> list[str]:
        """Stop every process this target started for the environment."""
        stopped = []
        with self._locked():
            self._route(None)
            history = self.history()
            for r in history:
                if _alive(r.pid, r.pid_start):
                    _stop(r.pid, r.pid_start)
                    stopped.append(f"{r.id} ({r.bento})")
                if r.status == LIVE:
                    r.status = STOPPED
            self._save(history)
            if info := self._router():
                _stop(info["pid"], info["start"])
                stopped.append(f"router on port {info['port']}")
        return stopped

    def status(self) -> dict[str, Any]:
        live = self.live()
        return {
            "environment": self.env_name,
            "model": self.model,
            "url": self.url,
            "live": asdict(live) if live and _alive(live.pid, live.pid_start) else None,
        }


def state_models(deploy_dir: Path, env_name: str) -> list[str]:
    """Models with local-target state in an environment (deployed there at some point)."""
    return sorted(p.parent.name for p in (deploy_dir / env_name).glob("*/history.json"))


def recorded_port(deploy_dir: Path, env_name: str, model: str) -> int | None:
    """The port a model's router was last started on in an environment, if ever."""
    path = deploy_dir / env_name / model / "router.json"
    return json.loads(path.read_text())["port"] if path.is_file() else None


# ---- state written before models had their own addresses ---------------------------------------


def legacy_state(env_dir: Path) -> bool:
    """<env>/history.json: one history for the whole environment, whatever model it served."""
    return (env_dir / "history.json").is_file()


def migrate_legacy(env_dir: Path) -> str | None:
    """Move an environment's old single-model state into <env>/<model>/ (the model of its last
    release), once nothing of it runs; returns that model. Refuses while it still serves."""
    if not legacy_state(env_dir):
        return None
    history = [Release(**r) for r in json.loads((env_dir / "history.json").read_text())]
    router = env_dir / "router.json"
    info = json.loads(router.read_text()) if router.is_file() else None
    if any(_alive(r.pid, r.pid_start) for r in history) or (
        info and _alive(info["pid"], info["start"])
    ):
        raise UsageError(
            f"{env_dir.name}: releases started before models had their own addresses still run;"
            " stop them once with `make down`, then deploy again"
        )
    last = next((r for r in reversed(history) if r.model_tag), None)
    model = last.model_tag.split(":")[0] if last and last.model_tag else "sales"
    dest = env_dir / model
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("history.json", "route.json", "router.json", "predictions.jsonl", "logs"):
        if (env_dir / name).exists() and not (dest / name).exists():
            os.replace(env_dir / name, dest / name)
    (env_dir / ".lock").unlink(missing_ok=True)
    return model
