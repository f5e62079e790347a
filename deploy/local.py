"""The `local` deploy target: releases run as background services on this host, behind a stable
address per environment and model (nginx on the model's port in that environment, see nginx.py and
addresses.py), all children of one supervisor that restarts whatever crashes (supervisor.py).
Models side by side never share an address, a history or a rollback.

A new release starts beside the live one on a port of its own and must pass readiness and the
smoke test there; only then does the routing file make it stable (nginx reloads gracefully), the
smoke test run again through the stable address, and the release it replaces become the previous
one: it answers requests the new one is late for or cannot take, and requests that name it by
x-model-version. Older releases stop after a drain period, as does a release rolled back (it is
never the fallback of the one restored). A release that fails any check never takes traffic (or
is switched back at once) and the previous one keeps serving. A deploy refused before it starts
(port taken, no nginx, no such Bento) changes nothing.

State, per environment and model, in <deploy_dir>/<env>/<model>/: routing.json (what runs and
what serves, routing.py; routing.json.good, its last good copy), history.json (every release of
that model and what became of it), router.json (the supervisor's pid), supervisor.json (what it runs), nginx/ (the router's prefix:
nginx.conf, logs/access.log as JSON lines, temp/), logs/ (one log per release, the router's and
the supervisor's), predictions.jsonl (the prediction log of every release).
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

from core.process import free_port
from core.settings import ROOT
from deploy import canary as analysis
from deploy import health, nginx, smoke, supervisor
from deploy import routing as routing_file
from deploy.config import Environment
from deploy.routing import CanaryRoute, RoutedRelease, Routing

LIVE, SUPERSEDED, FAILED, ROLLED_BACK, RESTORED, STOPPED, SHADOW = (
    "live",
    "superseded",
    "failed",
    "rolled_back",
    "restored",
    "stopped",
    "shadow",
)


# Supervisors outlive the deploy that started them: keep their Popen objects, which would
# otherwise be collected (and reported as leaked) while the supervisor runs on.
_DETACHED: list[subprocess.Popen[bytes]] = []


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
    """Free for a server: SO_REUSEADDR, as nginx sets it (connections in TIME_WAIT don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        notify=None,
    ) -> None:
        assert env.local is not None
        self.env_name, self.model = env_name, model
        self.name = f"{env_name}/{model}"  # in messages
        self.cfg = env.local
        self.port = port if port is not None else env.local.port
        self.dir = state_dir or deploy_dir / env_name / model
        self.log = log
        self.canary_cfg = env.canary
        # Told when something happens that nobody asked for (a canary rolled back): a callable
        # taking one line of text (the CLI posts it to Slack when a webhook is configured).
        self.notify = notify or (lambda text: None)

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

    # -- the supervisor (router and releases) and the routing file --
    def _supervisor(self) -> dict[str, Any] | None:
        path = self.dir / "router.json"
        info = json.loads(path.read_text()) if path.exists() else None
        return info if info and _alive(info["pid"], info["start"]) else None

    def _supervised(self) -> dict[str, Any]:
        path = self.dir / supervisor.STATE_FILE
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(path.read_text()))
        return {}

    def routing(self) -> Routing | None:
        """The routing file; UsageError in one line, with the way out, if it is broken."""
        try:
            return routing_file.load(self.dir)
        except routing_file.RoutingError as exc:
            raise UsageError(self.broken(exc)) from None

    def broken(self, exc: routing_file.RoutingError) -> str:
        good = self.dir / routing_file.GOOD_COPY
        back = (
            f"put back the last good copy (`cp {good} {self.dir / routing_file.ROUTING_FILE}`)"
            if good.is_file()
            else "there is no good copy to put back"
        )
        return (
            f"{self.name}: the routing file is broken: {exc}; nothing was changed (a running"
            f" router keeps its last good configuration): {back}, or stop everything with"
            f" `make down ENV={self.env_name}`"
        )

    def adopt_command(self) -> str:
        return f"make adopt ENV={self.env_name} MODEL={self.model}"

    def _ensure_supervisor(self) -> None:
        """The supervisor runs on this target's port; or UsageError, having changed nothing."""
        if nginx.binary() is None:
            raise UsageError(f"{self.name}: {nginx.INSTALL_HINT}")
        info = self._supervisor()
        if info and info.get("kind") != "supervisor":  # the Python router nginx replaced
            _stop(info["pid"], info["start"])
            info = None
        if info and info["port"] == self.port:
            return
        # A supervisor that died left its router serving on the port: the new one adopts it.
        ours = not info and self._router_left() == self.port
        if not ours and not _port_free(self.cfg.host, self.port):
            raise UsageError(
                f"{self.name}: port {self.port} on {self.cfg.host} is taken by another program;"
                f" free it, or change the port of {self.env_name} in deploy/config.yaml or"
                f" {self.model}'s deploy.port_offset in models/{self.model}/config.yaml"
            )
        if info:  # the configured port changed, and the new one is free
            _stop(info["pid"], info["start"], timeout=40)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "logs" / "supervisor.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.supervisor", str(self.dir)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _DETACHED.append(proc)
        start = None
        while start is None and proc.poll() is None:
            start = _start_time(proc.pid)
        _write_json(
            self.dir / "router.json",
            {"kind": "supervisor", "pid": proc.pid, "start": start, "port": self.port},
        )

    def _router_left(self) -> int | None:
        """The port of the router a supervisor that died left running, if it still runs."""
        path = self.dir / "router.json"
        if supervisor.router_left(self.dir) is None or not path.is_file():
            return None
        with contextlib.suppress(OSError, ValueError, KeyError):
            return int(json.loads(path.read_text())["port"])
        return None

    def adopt(self, timeout: float = 20.0) -> dict[str, Any]:
        """After the supervisor died (killed, out of memory): a new one takes over the router
        and releases it left serving, restarting none (supervisor.py). Returns the new
        supervisor's pid, what it adopted and what it had to start (what had died too)."""
        with self._locked():
            routing = self.routing()
            if routing is None or routing.stable is None:
                raise UsageError(f"{self.name}: nothing is deployed here to adopt")
            if info := self._supervisor():
                raise UsageError(
                    f"{self.name}: its supervisor runs (pid {info['pid']}): nothing to adopt"
                )
            before = self._supervised()
            self._ensure_supervisor()
            after = self._wait_applied(routing, timeout)

        def pids(state: dict[str, Any]) -> dict[str, int | None]:
            children = {"router": state.get("router"), **state.get("releases", {})}
            return {name: (c or {}).get("pid") for name, c in children.items()}

        old, new = pids(before), pids(after)
        return {
            "supervisor": after["pid"],
            "adopted": [f"{n} (pid {p})" for n, p in new.items() if p and old.get(n) == p],
            "started": [f"{n} (pid {p})" for n, p in new.items() if p and old.get(n) != p],
        }

    def _apply(self, routing: Routing, timeout: float = 20.0) -> dict[str, Any]:
        """Write the next generation of the routing file and wait until the supervisor applied
        it (nginx reloaded, releases started or stopped); returns the supervisor's state."""
        routing.generation += 1
        routing_file.save(self.dir, routing)
        return self._wait_applied(routing, timeout)

    def _wait_applied(self, routing: Routing, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._supervised()
            running = self._supervisor()
            if running is None:
                raise DeployError(
                    f"{self.name}: the supervisor exited; see {self.dir}/logs/supervisor.log"
                )
            if state.get("pid") != running["pid"]:  # the state a supervisor that died left
                time.sleep(0.05)
                continue
            started = all(
                (state.get("releases", {}).get(r.id) or {}).get("pid") for r in routing.releases
            )
            router = not routing.stable or (state.get("router") or {}).get("pid")
            if state.get("generation", -1) >= routing.generation and started and router:
                return state
            time.sleep(0.05)
        error = self._supervised().get("error") or "no answer"
        raise DeployError(
            f"{self.name}: the supervisor did not apply generation {routing.generation}: {error}"
        )

    def _wait_switched(self, release_id: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.headers.get("x-bentogate-release") == release_id:
                    return
            time.sleep(0.05)
        raise DeployError(f"{self.name}: the router did not switch to {release_id}")

    def _wait_mirrored(self, release_id: str, timeout: float = 15.0) -> None:
        """Until a request through the stable address shows in the shadow log: nginx's old
        workers, still finishing after a reload, do not mirror."""
        log = nginx.paths(self.dir / "nginx")["shadow_log"]
        deadline, n = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            n += 1
            marker = f"bentogate-shadow-check-{release_id}-{n}"
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/readyz", headers={"x-request-id": marker}, timeout=2)
            time.sleep(0.1)
            if log.is_file() and marker in log.read_text(errors="replace")[-65536:]:
                return
        raise DeployError(f"{self.name}: the router did not start mirroring to {release_id}")

    def _wait_ready(self, release: Release) -> float:
        """Poll the release's /readyz until 200; a crash while starting, an answer of 503 for
        not_ready_grace_s (its model failed its golden check) or the timeout fail it."""
        t0 = time.monotonic()
        first_503: float | None = None
        log = self.dir / "logs" / f"{release.id}.log"

        def tail() -> str:
            lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            return "; last log lines:\n" + "\n".join(lines) if lines else ""

        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - t0 < self.cfg.ready_timeout_s:
                info = self._supervised().get("releases", {}).get(release.id) or {}
                if info.get("restarts"):
                    raise DeployError(f"{release.bento} {info.get('last_exit')}{tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    status = client.get(f"{release.url}/readyz").status_code
                    if status == 200:
                        return time.monotonic() - t0
                    first_503 = first_503 or time.monotonic()
                    if time.monotonic() - first_503 > self.cfg.not_ready_grace_s:
                        raise DeployError(
                            f"{release.bento} is up but answers /readyz {status} (for"
                            f" {self.cfg.not_ready_grace_s:g}s): its model failed the readiness"
                            f" check{tail()}"
                        )
                time.sleep(0.05)
        raise DeployError(
            f"{release.bento} not ready within {self.cfg.ready_timeout_s:.0f}s{tail()}"
        )

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
        before = self.routing() or Routing(
            environment=self.env_name, model=self.model, host=self.cfg.host, port=self.port
        )
        starting = before.model_copy(deep=True)
        starting.port, starting.limits = self.port, self.cfg.router
        # A deploy says otherwise: no canary left half-way, no pin to the previous release.
        starting.canary, starting.fallback, starting.fallback_reason = None, None, ""
        starting.releases.append(
            RoutedRelease(id=release.id, bento=bento, model_tag=model_tag, port=release.port)
        )
        try:
            nginx.check_rendered(starting, self.dir / "nginx")
        except nginx.RouterConfigError as exc:
            raise UsageError(f"{self.name}: {exc}") from None
        self._ensure_supervisor()  # port taken or no nginx: refused here, nothing changed
        history.append(release)
        self._save(history)
        beside = f" beside {previous.id}" if previous else ""
        self.log(f"[{self.name}] {release.id}: starting {bento}{beside}")

        def fail(reason: str) -> DeployError:
            back = self.routing() or starting
            back.releases = [r for r in back.releases if r.id != release.id]
            if back.stable == release.id:
                back.stable, back.previous = before.stable, before.previous
            with contextlib.suppress(DeployError):
                self._apply(back)
            release.status, release.reason = FAILED, reason
            self._save(history)
            kept = (
                f"{previous.id} ({previous.bento}) keeps serving" if previous else "nothing serves"
            )
            return DeployError(f"{self.name}: {release.id} not released: {reason}; {kept}")

        try:
            state = self._apply(starting)
        except DeployError as exc:
            raise fail(str(exc)) from None
        release.pid = state["releases"][release.id]["pid"]
        release.pid_start = _start_time(release.pid) if release.pid else None
        self._save(history)
        try:
            took = self._wait_ready(release)
        except DeployError as exc:
            raise fail(f"readiness: {exc}") from None
        self.log(f"[{self.name}] {release.id}: ready in {took:.1f}s at {release.url}")
        checks = smoke.smoke(release.url, model_tag)
        if not smoke.passed(checks):
            raise fail(f"smoke test on its own port: {smoke.describe(checks)}")

        # The switch: the new release is stable, the one it replaces answers when it is late or
        # gone (and by version); any older one takes no new traffic and stops after the drain.
        switched = starting.model_copy(deep=True)
        switched.previous = starting.stable if starting.stable != release.id else None
        if rollback_of is not None:  # the release rolled back is nobody's fallback
            switched.previous = None
        switched.stable, switched.shadow = release.id, None
        keep = {switched.stable, switched.previous}
        for r in switched.releases:
            r.routed = r.id in keep
        try:
            self._apply(switched)
            self._wait_switched(release.id)
            # Pinned to the new release: a cold first predict over the time budget would be
            # answered by the previous release, and the smoke test would see the old model.
            checks = smoke.smoke(self.url, model_tag, headers={"x-model-version": release.id})
            if not smoke.passed(checks):
                raise DeployError(f"smoke test through {self.url}: {smoke.describe(checks)}")
        except DeployError as exc:
            with contextlib.suppress(DeployError):
                self._apply(starting)  # switch straight back: the old release is still running
                if previous:
                    self._wait_switched(previous.id)
            raise fail(f"{exc}; switched back") from None

        release.status = LIVE
        if previous:
            previous.status = SUPERSEDED if rollback_of is None else ROLLED_BACK
        self._save(history)
        drained = [r for r in switched.releases if not r.routed]
        if drained:
            time.sleep(self.cfg.drain_s)  # requests in flight on them finish
            switched.releases = [r for r in switched.releases if r.routed]
            self._apply(switched)
        self.log(f"[{self.name}] {release.id}: live at {self.url} ({bento})")
        return release

    def shadow(self, bento: str, model_tag: str | None) -> Release:
        """STRATEGY=shadow: start the candidate beside the stable release and mirror a share of
        the stable route's traffic to it; its answers are discarded, its predictions logged
        with the same request ids (`make shadow-report`). The next deploy ends it."""
        with self._locked():
            routing = self.routing()
            if routing is None or routing.stable is None:
                raise UsageError(f"{self.name}: nothing serves here to mirror: deploy first")
            if model_tag is None or model_tag.split(":")[0] != self.model:
                raise UsageError(f"{self.name}: {bento} serves {model_tag}, not {self.model!r}")
            history = self.history()
            release = Release(
                id=f"r{len(history) + 1:04d}",
                bento=bento,
                model_tag=model_tag,
                port=free_port(self.cfg.host),
            )
            starting = routing.model_copy(deep=True)
            old = starting.shadow
            starting.shadow, starting.limits = None, self.cfg.router
            starting.releases = [r for r in starting.releases if r.id != old]
            starting.releases.append(
                RoutedRelease(id=release.id, bento=bento, model_tag=model_tag, port=release.port)
            )
            mirrored = starting.model_copy(deep=True)
            mirrored.shadow = release.id
            try:
                nginx.check_rendered(mirrored, self.dir / "nginx")
            except nginx.RouterConfigError as exc:
                raise UsageError(f"{self.name}: {exc}") from None
            self._ensure_supervisor()
            for r in history:
                if r.id == old:
                    r.status = STOPPED
            history.append(release)
            self._save(history)
            try:
                state = self._apply(starting)
                release.pid = state["releases"][release.id]["pid"]
                release.pid_start = _start_time(release.pid) if release.pid else None
                self._wait_ready(release)
                checks = smoke.smoke(release.url, model_tag)
                if not smoke.passed(checks):
                    raise DeployError(f"smoke test on its own port: {smoke.describe(checks)}")
                self._apply(mirrored)
                self._wait_mirrored(release.id)
            except DeployError as exc:
                with contextlib.suppress(DeployError):
                    self._apply(routing)
                release.status, release.reason = FAILED, str(exc)
                self._save(history)
                raise DeployError(f"{self.name}: {release.id} not shadowing: {exc}") from None
            release.status = SHADOW
            self._save(history)
            share = self.cfg.router.shadow_percent
            self.log(
                f"[{self.name}] {release.id}: shadowing {share}% of {routing.stable}'s traffic"
            )
            return release

    def canary(
        self,
        bento: str,
        model_tag: str | None,
        report: Path | None = None,
        extra_checks: tuple[analysis.Check, ...] = (),
    ) -> Release:
        """STRATEGY=canary: start the release beside the stable one and move the requests that
        name no version to it in steps (deploy/config.yaml `canary`), analysing both releases
        over each interval from the router's access log (canary.py) before the next step.
        pass: next step; inconclusive (too few requests): hold, and after `max_holds` holds in
        a row roll back (never promote on no data); fail: counted, and at `max_failed_checks`
        roll back. Rolled back: 0%, the canary stopped after a drain, the stable release
        untouched, a notification, DeployError. The last step (100%) promotes: the canary is
        stable, the stable one previous, the one before stops after a drain. The step report
        goes to `report` (Markdown, and JSON beside it). `extra_checks` join the built-in ones
        (an accuracy check on joined actuals, once monitoring provides one)."""
        with self._locked():
            return self._canary(bento, model_tag, report, extra_checks)

    def _canary(
        self,
        bento: str,
        model_tag: str | None,
        report: Path | None,
        extra_checks: tuple[analysis.Check, ...],
    ) -> Release:
        cfg = self.canary_cfg
        before = self.routing()
        if before is None or before.stable is None:
            raise UsageError(
                f"{self.name}: nothing serves here to compare a canary with: deploy first"
            )
        if model_tag is None or model_tag.split(":")[0] != self.model:
            raise UsageError(f"{self.name}: {bento} serves {model_tag}, not {self.model!r}")
        history = self.history()
        stable_id = before.stable
        release = Release(
            id=f"r{len(history) + 1:04d}",
            bento=bento,
            model_tag=model_tag,
            port=free_port(self.cfg.host),
        )
        starting = before.model_copy(deep=True)
        starting.port, starting.limits = self.port, self.cfg.router
        starting.shadow, starting.fallback, starting.fallback_reason = None, None, ""
        starting.canary = None
        starting.releases = [r for r in starting.releases if r.routed]  # a shadow ends
        starting.releases.append(
            RoutedRelease(id=release.id, bento=bento, model_tag=model_tag, port=release.port)
        )

        def weighted(weight: int) -> Routing:
            out = starting.model_copy(deep=True)
            for r in out.releases:
                r.routed = r.routed or r.id == release.id
            out.canary = CanaryRoute(
                release=release.id, weight=weight, sticky_header=cfg.sticky_header
            )
            return out

        try:
            nginx.check_rendered(weighted(cfg.steps[0]), self.dir / "nginx")
        except nginx.RouterConfigError as exc:
            raise UsageError(f"{self.name}: {exc}") from None
        self._ensure_supervisor()
        for r in history:
            if r.id == before.shadow:
                r.status = STOPPED
        history.append(release)
        self._save(history)
        self.log(f"[{self.name}] {release.id}: canary {bento} beside {stable_id}")
        steps: list[analysis.Step] = []

        def write_report(outcome: str) -> None:
            if report is None:
                return
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(analysis.markdown(release.id, stable_id, steps, outcome))
            data = {
                "environment": self.env_name,
                "model": self.model,
                "bento": bento,
                "model_tag": model_tag,
                "canary": release.id,
                "stable": stable_id,
                "outcome": outcome,
                "config": cfg.model_dump(),
                "steps": [
                    {
                        "weight": s.weight,
                        "action": s.action,
                        **(s.analysis.to_dict() if s.analysis else {}),
                    }
                    for s in steps
                ],
            }
            _write_json(report.with_suffix(".json"), data)

        def back(reason: str, status: str = FAILED) -> DeployError:
            """To 0%: the stable route as it was, the canary stopped after a drain."""
            with contextlib.suppress(DeployError):
                self._apply(starting.model_copy(deep=True))
                time.sleep(self.cfg.drain_s)
                gone = starting.model_copy(deep=True)
                gone.releases = [r for r in gone.releases if r.id != release.id]
                self._apply(gone)
            release.status, release.reason = status, reason
            self._save(history)
            text = f"{self.name}: canary {release.id} ({bento}) rolled back: {reason}; {stable_id} keeps serving"
            write_report(f"rolled back ({reason})")
            self.notify(text)
            return DeployError(text)

        try:
            state = self._apply(starting)
            release.pid = state["releases"][release.id]["pid"]
            release.pid_start = _start_time(release.pid) if release.pid else None
            self._save(history)
            took = self._wait_ready(release)
            self.log(f"[{self.name}] {release.id}: ready in {took:.1f}s at {release.url}")
            checks = smoke.smoke(release.url, model_tag)
            if not smoke.passed(checks):
                raise DeployError(f"smoke test on its own port: {smoke.describe(checks)}")
        except DeployError as exc:
            raise back(f"not started: {exc}") from None

        access = nginx.paths(self.dir / "nginx")["access_log"]
        limits = self.cfg.router  # no budget: nginx waits read_timeout_s before the other one
        budget_ms = limits.budget_ms or limits.read_timeout_s * 1000
        step, failed, holds, applied = 0, 0, 0, 0
        while cfg.steps[step] < 100:
            weight = cfg.steps[step]
            if weight != applied:  # a hold analyses the same weight again: no reload
                try:
                    self._apply(weighted(weight))
                except DeployError as exc:
                    raise back(str(exc)) from None
                applied = weight
            offset = access.stat().st_size if access.is_file() else 0
            time.sleep(cfg.interval_s)
            records = read_from(access, offset)
            result = analysis.analyse(
                records, release.id, stable_id, cfg, extra_checks, budget_ms=budget_ms
            )
            if result.verdict == analysis.PASS:
                action, step, holds = "advance", step + 1, 0
            elif result.verdict == analysis.INCONCLUSIVE:
                holds += 1
                action = f"hold ({holds}/{cfg.max_holds})"
            else:
                failed += 1
                action = f"failed check ({failed}/{cfg.max_failed_checks})"
            steps.append(analysis.Step(weight, result, action))
            self.log(f"[{self.name}] {release.id} at {weight}%: {result.verdict}: {action}")
            if result.verdict == analysis.FAIL and failed >= cfg.max_failed_checks:
                steps[-1].action = "roll back"
                raise back(f"failed its checks {failed} times at {weight}%: {result.describe()}")
            if holds > cfg.max_holds:
                steps[-1].action = "roll back"
                raise back(
                    f"inconclusive {holds} times in a row at {weight}% (too little traffic to"
                    " judge; a canary is never promoted on no data)"
                )

        # The last step: the canary is stable, the stable one previous, any older one drains.
        promoted = starting.model_copy(deep=True)
        promoted.previous, promoted.stable = stable_id, release.id
        for routed in promoted.releases:
            routed.routed = routed.id in (release.id, stable_id)
        try:
            self._apply(promoted)
            self._wait_switched(release.id)
        except DeployError as exc:
            raise back(f"promotion: {exc}") from None
        release.status = LIVE
        for r in history:
            if r.id == stable_id:
                r.status = SUPERSEDED
        self._save(history)
        steps.append(analysis.Step(100, None, "promote"))
        write_report("promoted")
        if any(not r.routed for r in promoted.releases):
            time.sleep(self.cfg.drain_s)
            promoted.releases = [r for r in promoted.releases if r.routed]
            self._apply(promoted)
        self.log(f"[{self.name}] {release.id}: promoted, live at {self.url} ({bento})")
        return release

    def unpin(self) -> str:
        """The operator says the stable release may answer again after a sustained budget miss
        sent its traffic to the previous release (supervisor.py). Returns the stable id."""
        with self._locked():
            routing = self.routing()
            if routing is None or routing.fallback is None:
                raise UsageError(f"{self.name}: nothing is pinned to the previous release")
            self._ensure_supervisor()  # one that died: taken over first, as a deploy does
            routing.fallback, routing.fallback_reason = None, ""
            self._apply(routing)
            assert routing.stable is not None
            self._wait_switched(routing.stable)
            self.log(f"[{self.name}] {routing.stable} answers its own traffic again")
            return routing.stable

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
            why = ""
            routing = self.routing()
            previous = routing.release(routing.previous) if routing else None
            if previous is not None and previous.bento == live.bento:
                # A redeploy of the same Bento: going back to it would serve the same model.
                why = (
                    f": the previous release {previous.id} runs the same Bento as {live.id}"
                    f" ({live.bento}), so going back to it would change nothing; deploy the"
                    f" Bento you want back with `make deploy ENV={self.env_name} BENTO=...`"
                )
            raise UsageError(f"{self.name}: no earlier release to roll back to{why}")
        return live, candidates[-1]

    def rollback(self) -> Release:
        """Instant when the release to go back to still runs as the previous one: it is stable
        again in the routing file (a reload, no restart). Otherwise (going further back) the
        earlier Bento is released again (readiness, smoke test). Either way the release rolled
        back takes no traffic and stops after the drain: never the fallback of the one that
        replaces it (a monitor rolls back on a breach; a crash of the stable release must not
        send its traffic to the model it left)."""
        with self._locked():
            live, target = self.rollback_target()
            routing = self.routing()
            if routing is not None and routing.stable == live.id and routing.previous == target.id:
                # A supervisor that died is taken over first (as a deploy does): the routing file
                # never says what nobody applies, and a refusal here changes nothing.
                self._ensure_supervisor()
                swapped = rolled_back(routing, live.id, target.id)
                self._apply(swapped)
                self._wait_switched(target.id)
                history = self.history()
                for r in history:
                    if r.id == live.id:
                        r.status, r.reason = ROLLED_BACK, f"rolled back to {target.id}"
                    if r.id == target.id:
                        r.status, r.reason = LIVE, f"restored: rollback of {live.id}"
                        r.rollback_of = live.id
                self._save(history)
                time.sleep(self.cfg.drain_s)  # requests in flight on it finish
                swapped.releases = [r for r in swapped.releases if r.id != live.id]
                self._apply(swapped)
                self.log(f"[{self.name}] rolled back {live.id} to {target.id} (swap, no restart)")
                return next(r for r in history if r.id == target.id)
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
            # What runs, from the supervisor's own state: the routing file may be broken.
            supervised = self._supervised()
            bentos = {r.id: r.bento for r in self.history()}
            if info := self._supervisor():
                _stop(info["pid"], info["start"], timeout=40)
                running = [
                    f"{rid} ({bentos.get(rid, '?')})" for rid in supervised.get("releases", {})
                ]
                stopped += [*running, f"router on port {info['port']}"]
            stopped += [
                f"{pid} (left by a supervisor that died)"
                for pid in supervisor.stop_orphans(self.dir)
            ]
            for name in (routing_file.ROUTING_FILE, routing_file.GOOD_COPY):
                (self.dir / name).unlink(missing_ok=True)
            (self.dir / "route.json").unlink(missing_ok=True)
            history = self.history()
            for r in history:
                if _alive(r.pid, r.pid_start):  # started before the supervisor ran releases
                    _stop(r.pid, r.pid_start)
                    stopped.append(f"{r.id} ({r.bento})")
                if r.status in (LIVE, SHADOW):
                    r.status = STOPPED
            self._save(history)
        return stopped

    def status(self) -> dict[str, Any]:
        """The truth, from outside: the stable address and each release's /readyz, asked now."""
        live = self.live()
        out: dict[str, Any] = {
            "environment": self.env_name,
            "model": self.model,
            "url": self.url,
            "live": asdict(live) if live else None,
        }
        try:
            routing = routing_file.load(self.dir)
        except routing_file.RoutingError as exc:
            out.update(health.broken(self.url, self.broken(exc)))
            return out
        supervised = self._supervised() if self._supervisor() is not None else None
        out.update(health.check(self.url, routing, supervised, recover=self.adopt_command()))
        return out


def rolled_back(routing: Routing, live: str, target: str) -> Routing:
    """The routing file once `live` is rolled back to `target`, which runs as its previous
    release: `target` stable, no previous, `live` no longer routed (it stops after the drain),
    no canary and no pin."""
    out = routing.model_copy(deep=True)
    out.stable, out.previous = target, None
    out.canary, out.fallback, out.fallback_reason = None, None, ""
    for r in out.releases:
        r.routed = r.routed and r.id != live
    return out


def read_from(path: Path, offset: int) -> list[dict[str, Any]]:
    """The JSON lines appended to `path` since byte `offset` (a torn last line is skipped)."""
    if not path.is_file():
        return []
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    out = []
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


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
