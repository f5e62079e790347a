"""The supervisor of one model in one environment: runs the router (nginx) and every release the
routing file names as its children, and restarts any of them that exits, within a second.

It watches routing.json: a new generation is rendered into nginx.conf, checked with `nginx -t`
and applied with SIGHUP (nginx's graceful reload: requests in flight finish on the old workers);
a release that appears is started, one that disappears is stopped. What it runs, and the
generation it applied, are in supervisor.json for the deploy and `make status` to read.

A supervisor that starts where one died (killed, OOM) adopts what that one left serving instead
of restarting it: the router named by nginx's own pid file under its prefix, and each release
supervisor.json names that is still the same process (its command line and start time) and
still in the routing file. They are not its children, so it cannot wait() for them: it watches
each through a pidfd (which never names another process that reuses the pid) and restarts it
when it exits, like any child. Anything else the dead one left running is stopped.

`python -m deploy.supervisor STATE_DIR` (started by the local target, in its own session).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.process import BENTOML
from core.settings import get_settings
from deploy import canary, nginx, notify, routing

STATE_FILE = "supervisor.json"
TICK_S = 0.2
STOP_GRACE_S = 20.0
RELOAD_WAIT_S = 15.0


def _log(message: str) -> None:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    print(f"{now} {message}", flush=True)


def _become_subreaper() -> None:
    """Orphans of our children (BentoML's workers run in sessions of their own and outlive an
    arbiter killed alone, holding its port) become our children, so we can find and stop them."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _orphans(known: set[int]) -> list[int]:
    """Our child processes that we did not start: the orphans of a crashed child."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if int(fields[1]) == me and pid not in known:
                out.append(pid)
    return out


def _children_of(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(stat.parent.name))
    return out


def _listening(port: int) -> list[int]:
    """The processes holding a listening socket on `port`: a release's workers hold its port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{f[9]}]")
    out = []
    for fds in Path("/proc").glob("[0-9]*/fd") if inodes else []:
        with contextlib.suppress(OSError, ValueError):
            if any(os.readlink(fd) in inodes for fd in fds.iterdir()):
                out.append(int(fds.parent.name))
    return out


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, who it is."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Adopted:
    """A process a supervisor that died started, taken over: not our child, so no wait(); a pidfd
    says when it exits and signals it (never another process that got its pid). A release's
    workers (BentoML's run in sessions of their own, and once it is gone they are init's, linked
    to it by nothing) are found by the port they hold, to be stopped with it."""

    def __init__(self, pid: int, port: int | None = None, bento: str = "") -> None:
        self.pid, self.port, self.bento = pid, port, bento
        self.fd: int | None = os.pidfd_open(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.fd is not None and select.select([self.fd], [], [], 0)[0]:
            os.close(self.fd)
            self.fd, self.returncode = None, -1  # its exit status went to its new parent
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None and self.fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.fd, sig)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def stop_workers(self) -> None:
        """Once it is gone: the BentoML workers still holding its port."""
        if self.port is not None and self.poll() is not None:
            stop_workers(self.port, self.bento)


def stop_workers(port: int, bento: str, grace_s: float = 2.0) -> list[int]:
    """SIGTERM the workers of `bento` holding `port` with no arbiter left, then SIGKILL."""
    workers = {
        p: start_time(p)
        for p in _listening(port)
        if "bentoml" in (cmd := _cmdline(p)) and f" {bento} " in cmd
    }
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(start_time(p) == t for p, t in workers.items()):
        time.sleep(0.02)
    for pid, started in workers.items():
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return list(workers)


@dataclass
class Child:
    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | Adopted | None = None
    started: int | None = None  # the process's start time: with its pid, who it is
    restarts: int = 0
    next_start: float = 0.0
    last_exit: str = ""
    last_restart: float | None = None  # epoch seconds

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=cwd,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: its workers go with it
            )
        self.started = start_time(self.proc.pid)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_GRACE_S) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        _kill_group(self.proc.pid, signal.SIGKILL)  # workers that outlived their parent
        if isinstance(self.proc, Adopted):
            self.proc.stop_workers()


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.prefix = directory / "nginx"
        self.releases: dict[str, Child] = {}
        self.router: Child | None = None
        self.stamp: tuple[int, int] | None = None
        self.routing: routing.Routing | None = None
        self.applied = -1
        self.error = ""
        self.stopping = False
        self.stopping_children: list[Child] = []
        self.misses = MissWatch(directory)
        self.adopted_generation: int | None = None  # what the adopted router already runs

    # -- the routing file --
    def reload(self) -> None:
        path = self.dir / routing.ROUTING_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_ino) == self.stamp:
            return
        self.stamp = (st.st_mtime_ns, st.st_ino)
        try:
            new = routing.load(self.dir)
            assert new is not None
            nginx.write_checked(new, self.prefix)
        except Exception as exc:  # keep serving the last good configuration, and say why
            self.error = f"generation not applied: {exc}"
            _log(self.error)
            return
        self.routing, self.error = new, ""
        # An adopted router already runs the generation its supervisor applied: no reload.
        adopted, self.adopted_generation = self.adopted_generation, None
        if new.generation == adopted:
            self.applied = new.generation
            return
        if self.router and self.router.exited() is None and self.router.proc:
            old_workers = _children_of(self.router.proc.pid)
            self.router.proc.send_signal(signal.SIGHUP)
            # Applied means every worker runs it: an old worker still accepts connections for a
            # moment after the reload (worker_shutdown_timeout bounds its in-flight requests).
            deadline = time.monotonic() + RELOAD_WAIT_S
            while any(map(_running, old_workers)) and time.monotonic() < deadline:
                time.sleep(0.01)
            _log(f"router reloaded: generation {new.generation}")
        self.applied = new.generation

    # -- children --
    def _release_child(self, r: routing.RoutedRelease, host: str | None = None) -> Child:
        host = host or (self.routing.host if self.routing else "127.0.0.1")
        # Its own metrics folder: BentoML's, $BENTOML_HOME/prometheus_multiproc_dir, is one for
        # every server and wiped whenever any starts (service.py reads the variable).
        metrics = self.dir / "metrics" / r.id
        metrics.mkdir(parents=True, exist_ok=True)
        return Child(
            name=r.id,
            cmd=[BENTOML, "serve", r.bento, "--host", host, "--port", str(r.port)],
            log_path=self.dir / "logs" / f"{r.id}.log",
            env={
                "BENTOML_DO_NOT_TRACK": "true",
                "BENTOGATE_PREDICTION_LOG": str(self.dir / "predictions.jsonl"),
                "BENTOGATE_ACTUALS_LOG": str(self.dir / "actuals.jsonl"),
                "BENTOGATE_RELEASE": r.id,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            },
        )

    def _router_child(self) -> Child:
        return Child(
            "router",
            nginx.command(self.prefix, nginx.paths(self.prefix)["conf"]),
            self.dir / "logs" / "router.log",
        )

    # -- taking over from a supervisor that died --
    def adopt(self) -> list[str]:
        """Take over the router and releases a supervisor that died left serving (see the
        module's docstring); stop whatever else it left. Returns what was adopted."""
        current = routing.load(self.dir)  # RoutingError: nothing is touched (see run)
        try:
            old = json.loads((self.dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            old = {}
        adopted: list[str] = []
        if isinstance(old, dict) and current is not None:
            for r in current.releases:
                info = (old.get("releases") or {}).get(r.id) or {}
                child = self._release_child(r, current.host)
                cmd = f"serve {r.bento} --host {current.host} --port {r.port} "
                if self._take(child, info.get("pid"), cmd, info, r.port, r.bento):
                    self.releases[r.id] = child
                    adopted.append(f"{r.id} (pid {info['pid']})")
                    continue
                # Its arbiter died too: workers it left would hold the port of its restart.
                if left := stop_workers(r.port, r.bento):
                    _log(f"{r.id}: stopped workers {left} its dead arbiter left on its port")
            router, pid = self._router_child(), nginx.running_pid(self.prefix)
            if self._take(router, pid, router_command(self.prefix), old.get("router") or {}):
                self.router = router
                self.adopted_generation = old.get("generation")
                adopted.append(f"router (pid {pid})")
        keep = {c.proc.pid for c in self._children() if c.proc is not None}
        stop_orphans(self.dir, keep=keep)
        return adopted

    @staticmethod
    def _take(
        child: Child,
        pid: Any,
        command: str,
        info: dict[str, Any],
        port: int | None = None,
        bento: str = "",
    ) -> bool:
        """Adopt `pid` as `child` if it is the process started with `command` (and at the start
        time recorded, when one is): a pid reused by another process is never taken."""
        start = info.get("start")

        def same() -> bool:
            alive = start_time(pid)
            return alive is not None and start in (None, alive) and command in _cmdline(pid) + " "

        if not isinstance(pid, int) or not same():
            return False
        try:
            proc = Adopted(pid, port, bento)
        except OSError:  # gone meanwhile
            return False
        if not same():  # the pid was reused between the check and the pidfd
            return False
        child.proc, child.started = proc, start_time(pid)
        child.restarts = int(info.get("restarts") or 0)
        child.last_exit = str(info.get("last_exit") or "")
        child.last_restart = info.get("last_restart")
        return True

    def ensure(self) -> bool:
        """Start what should run and is not; stop what should not run. True if anything changed."""
        if self.routing is None:  # no routing file read yet: nothing is known to be unwanted
            return False
        changed = False
        wanted = {r.id: r for r in (self.routing.releases if self.routing else [])}
        for rid in [rid for rid in self.releases if rid not in wanted]:
            child = self.releases.pop(rid)
            _log(f"{rid}: stopping (no longer in the routing file)")
            if child.proc and child.exited() is None:
                child.proc.send_signal(signal.SIGTERM)
            self.stopping_children.append(child)
            changed = True
        for rid, r in wanted.items():
            if rid not in self.releases:
                self.releases[rid] = self._release_child(r)
            changed |= self._keep_running(self.releases[rid])
        if self.routing is not None and self.applied >= 0:
            if self.router is None:
                self.router = self._router_child()
            changed |= self._keep_running(self.router)
        self._reap_stopping()
        return changed

    def _keep_running(self, child: Child) -> bool:
        code = child.exited()
        if child.proc is not None and code is None:
            return False
        now = time.monotonic()
        if child.proc is not None:  # it ran, and exited: a crash (we stop nothing we keep)
            _kill_group(child.proc.pid, signal.SIGKILL)
            self._stop_orphans()  # its workers hold the port
            child.last_exit = f"exited with {code}"
            if isinstance(child.proc, Adopted):
                child.proc.stop_workers()
                child.last_exit = "exited (adopted: its exit status went to init)"
            child.restarts += 1
            child.last_restart = time.time()
            # Back at once the first time; a release that keeps crashing waits up to 4 s.
            child.next_start = now + min(4.0, 0.25 * 2 ** (child.restarts - 1))
            child.proc = None
            _log(f"{child.name}: {child.last_exit}; restarting (restart {child.restarts})")
        if now < child.next_start:
            return False
        child.start(self.dir)
        _log(f"{child.name}: started, pid {child.proc.pid if child.proc else '?'}")
        return True

    def _stop_orphans(self, grace_s: float = 2.0) -> None:
        """SIGTERM first: an orphaned worker finishes the responses it is sending (a client
        mid-body would see a cut response), then SIGKILL whatever is left after `grace_s`."""
        known = {c.proc.pid for c in self._children() if c.proc is not None}
        orphans = _orphans(known)
        for pid in orphans:
            _log(f"stopping orphan {pid} of a child that exited")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        left = list(orphans)
        while left and time.monotonic() < deadline:
            for pid in list(left):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        left.remove(pid)
            time.sleep(0.02)
        for pid in left:
            _kill_group(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _children(self) -> list[Child]:
        router = [self.router] if self.router else []
        return [*router, *self.releases.values(), *self.stopping_children]

    def _reap_stopping(self) -> None:
        for child in list(self.stopping_children):
            if child.exited() is not None:
                assert child.proc is not None
                _kill_group(child.proc.pid, signal.SIGKILL)
                if isinstance(child.proc, Adopted):
                    child.proc.stop_workers()
                self.stopping_children.remove(child)
                self._stop_orphans()
                shutil.rmtree(self.dir / "metrics" / child.name, ignore_errors=True)

    def state(self) -> dict[str, Any]:
        def info(child: Child | None) -> dict[str, Any] | None:
            if child is None:
                return None
            pid = child.proc.pid if child.proc and child.exited() is None else None
            return {
                "pid": pid,
                "start": child.started if pid else None,
                "restarts": child.restarts,
                "last_exit": child.last_exit,
                "last_restart": child.last_restart,
            }

        return {
            "pid": os.getpid(),
            "generation": self.applied,
            "error": self.error,
            "miss_checks": self.misses.checks,
            "router": info(self.router),
            "releases": {rid: info(c) for rid, c in self.releases.items()},
        }

    def save(self) -> None:
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        os.replace(tmp, self.dir / STATE_FILE)

    def shutdown(self) -> None:
        if self.router:
            self.router.stop(signal.SIGQUIT, timeout=10)  # graceful: requests in flight finish
        for child in [*self.releases.values(), *self.stopping_children]:
            child.stop()
        self._stop_orphans()
        (self.dir / STATE_FILE).unlink(missing_ok=True)

    def run(self) -> None:
        def stop(signum: int, frame: object) -> None:
            self.stopping = True

        _become_subreaper()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        _log(f"supervisor {os.getpid()} for {self.dir}")
        try:
            adopted = self.adopt()
        except routing.RoutingError as exc:  # what it names cannot be known: touch nothing
            _log(f"not started: {exc}")
            raise SystemExit(2) from None
        if adopted:
            _log(f"adopted from a supervisor that died: {', '.join(adopted)}")
        try:
            last = ""
            while not self.stopping:
                self.reload()
                self.ensure()
                self.misses.tick(
                    self.routing, {r: c.last_restart for r, c in self.releases.items()}
                )
                now = json.dumps(self.state())
                if now != last:
                    self.save()
                    last = now
                time.sleep(TICK_S)
        finally:
            _log("stopping every child")
            self.shutdown()


# The access log's times have whole seconds, and the supervisor sees a crash within a tick: a miss
# up to this long before the crash it saw is the crash's.
CRASH_SLACK_S = 1.0


@dataclass(frozen=True)
class Answer:
    """One prediction request of the split, from the access log."""

    when: float  # epoch seconds (the access log's time)
    release: str  # the release it was routed to
    missed: bool  # another release answered it (late, refused or failing)


def answers(records: Iterable[dict[str, Any]], default_when: float) -> list[Answer]:
    """The split's requests in `records`; a line with no readable time is `default_when`'s."""
    out = []
    for r in canary.split_records(records):
        try:
            when = dt.datetime.fromisoformat(str(r.get("time"))).timestamp()
        except ValueError:
            when = default_when
        routed, by = r.get("routed_to", ""), r.get("answered_by")
        out.append(Answer(when, routed, bool(by) and by != routed))
    return out


@dataclass(frozen=True)
class Restart:
    """A release the supervisor restarted after a crash."""

    crashed: float  # when the supervisor saw the crash (epoch seconds)
    back: float | None = None  # when it first answered a request itself after it


def restart_exempt(
    window: Sequence[Answer], release: str, restarts: Sequence[Restart]
) -> tuple[list[bool], list[Restart]]:
    """`release`'s requests over `window` (True: missed), less those it missed while restarting
    after a crash: from the crash (less CRASH_SLACK_S) until the first request it answered
    itself after it (a cold first answer past the budget is still the restart's). And
    `restarts`, each with the time it was back, once it is."""
    mine = sorted((a for a in window if a.release == release), key=lambda a: a.when)
    out = [
        r
        if r.back is not None
        else Restart(
            r.crashed, next((a.when for a in mine if not a.missed and a.when > r.crashed), None)
        )
        for r in restarts
    ]

    def restarting(a: Answer) -> bool:
        return any(
            r.crashed - CRASH_SLACK_S <= a.when and (r.back is None or a.when < r.back) for r in out
        )

    return [a.missed for a in mine if not (a.missed and restarting(a))], out


def breach(counted: Sequence[bool], rule: routing.SustainedMiss, previous: str) -> str | None:
    """Why the stable release's traffic goes to the previous release, or None."""
    if rule.max_share is None or len(counted) < rule.min_requests:
        return None
    missed = sum(counted)
    if missed / len(counted) <= rule.max_share:
        return None
    return (
        f"{missed}/{len(counted)} ({missed / len(counted):.0%}) of its requests in the last"
        f" {rule.window_s:g}s were answered by the previous release {previous}"
        f" (max {rule.max_share:.0%})"
    )


class MissWatch:
    """Better wrong than late, sustained: reads the router's access log every few seconds and,
    when more than `sustained_miss.max_share` of the stable release's requests over the window
    were answered by the previous release (late, refused or failing), pins the stable route to
    the previous release in the routing file (`fallback`), records an event in events.jsonl and
    notifies (Slack, when a webhook is configured). Skipped while a deploy holds the lock: a
    canary's own analysis judges its traffic. A stable release restarting after a crash is not
    late: its misses until it answers again do not count (restart_exempt)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.log = nginx.paths(directory / "nginx")["access_log"]
        # From the end: what was logged before this supervisor started is not recent.
        self.offset = self.log.stat().st_size if self.log.is_file() else 0
        self.next = 0.0
        self.window: list[Answer] = []
        self.restarts: dict[str, list[Restart]] = {}
        self.seen: dict[str, float] = {}  # release -> the last crash time the supervisor gave
        self.checks = 0  # looks at the log so far (in the state: a test waits for the next ones)

    def _read(self) -> list[dict[str, Any]]:
        try:
            size = self.log.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced
            self.offset = 0
        with open(self.log, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next tick
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def tick(
        self,
        current: routing.Routing | None,
        crashed: Mapping[str, float | None] | None = None,
        now: float | None = None,
        wall: float | None = None,
    ) -> str | None:
        """`crashed`: release -> when (epoch) the supervisor last restarted it after a crash."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        for rid, when in (crashed or {}).items():  # every tick: two crashes between reads
            if when is not None and self.seen.get(rid) != when:
                self.seen[rid] = when
                mine = self.restarts.setdefault(rid, [])
                if all(r.back is not None for r in mine):  # one not back yet covers this one
                    mine.append(Restart(when))
        if current is None or now < self.next:
            return None
        rule = current.limits.sustained_miss
        self.next = now + rule.every_s
        self.window += answers(self._read(), wall)
        self.window = [a for a in self.window if wall - a.when <= rule.window_s]
        self.checks += 1
        for rid, restarts in self.restarts.items():
            _, restarts = restart_exempt(self.window, rid, restarts)
            # Back longer ago than the window: no request it exempts is left in it.
            self.restarts[rid] = [
                r for r in restarts if r.back is None or wall - r.back <= rule.window_s
            ]
        stable, previous = current.stable, current.previous
        if stable is None or previous is None or current.fallback or current.canary is not None:
            return None
        counted, _ = restart_exempt(self.window, stable, self.restarts.get(stable, []))
        reason = breach(counted, rule, previous)
        if reason is None or not self._pin(stable, reason):
            return None
        self.window = []
        text = (
            f"{current.environment}/{current.model}: all traffic of {stable} now goes to"
            f" {previous}: {reason}; `make unpin` or a deploy ends it"
        )
        _log(text)
        event = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "event": "fallback",
            "release": stable,
            "previous": previous,
            "text": text,
        }
        with open(self.dir / "events.jsonl", "a") as fh:
            fh.write(json.dumps(event) + "\n")
        webhook = get_settings().slack_webhook_url
        if webhook is not None:
            try:
                notify.slack(webhook.get_secret_value(), f":warning: {text}")
            except notify.NotifyError as exc:
                _log(f"notify: {exc}")
        return text

    def _pin(self, stable: str, reason: str) -> bool:
        """Write the pin unless a deploy runs (it holds the lock, and decides)."""
        import fcntl

        with open(self.dir / ".lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                current = routing.load(self.dir)
            except routing.RoutingError:  # a broken file is refused; the deploy says how
                return False
            if current is None or current.stable != stable or current.fallback is not None:
                return False
            current.fallback, current.fallback_reason = stable, reason
            current.generation += 1
            routing.save(self.dir, current)
        return True


def router_command(prefix: Path) -> str:
    """What the command line of the router with this prefix holds (nginx's master rewrites its
    own, keeping the arguments)."""
    return f"nginx -p {prefix} "


def router_left(directory: Path) -> int | None:
    """The pid of the router a supervisor of `directory` started, if it runs (whoever runs it)."""
    prefix = directory.resolve() / "nginx"  # as the supervisor started it
    pid = nginx.running_pid(prefix)
    if pid is None or start_time(pid) is None or router_command(prefix) not in _cmdline(pid) + " ":
        return None
    return pid


def stop_orphans(directory: Path, keep: set[int] | None = None) -> list[int]:
    """Stop what a supervisor that was killed alone left running (its nginx and releases hold
    the ports): the pids in its last state file that are still nginx or bentoml processes,
    but those in `keep` (adopted)."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    pids = [(state.get("router") or {}).get("pid")]
    pids += [(info or {}).get("pid") for info in state.get("releases", {}).values()]
    stopped = []
    for pid in filter(None, pids):
        if pid in (keep or set()):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"nginx" in cmdline or b"bentoml" in cmdline:
            _kill_group(pid, signal.SIGTERM)
            stopped.append(pid)
    deadline = time.monotonic() + STOP_GRACE_S
    while (
        stopped
        and time.monotonic() < deadline
        and any(Path(f"/proc/{pid}").exists() for pid in stopped)
    ):
        time.sleep(0.05)
    for pid in stopped:
        _kill_group(pid, signal.SIGKILL)
    if not keep:
        (directory / STATE_FILE).unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploy.supervisor STATE_DIR", file=sys.stderr)
        raise SystemExit(2)
    Supervisor(Path(args[0]).resolve()).run()


if __name__ == "__main__":
    main()
