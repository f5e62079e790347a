"""What a supervisor takes over from one that died, without nginx or BentoML: a process is adopted
only if it is the one recorded (command line and start time), its exit is seen though it is not
our child, and a supervisor started over a broken routing file touches nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.process import free_port
from deploy import supervisor
from deploy.routing import ROUTING_FILE

# A stand-in for a release: its command line holds what a release's does.
COMMAND = "serve sales_api:v1 --host 127.0.0.1 --port 41001 "


@pytest.fixture
def stand_in():
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *COMMAND.split(), "bentoml"]
    )
    yield proc
    proc.kill()
    proc.wait()


def child() -> supervisor.Child:
    return supervisor.Child("r0001", [], Path("r0001.log"))


def test_the_process_recorded_is_adopted_and_its_exit_seen_though_it_is_not_our_child(stand_in):
    c = child()
    info = {"pid": stand_in.pid, "start": supervisor.start_time(stand_in.pid), "restarts": 2}
    assert supervisor.Supervisor._take(c, stand_in.pid, COMMAND, info)
    assert (c.proc.pid, c.restarts, c.exited()) == (stand_in.pid, 2, None)
    stand_in.send_signal(signal.SIGKILL)
    stand_in.wait()
    assert c.exited() is not None


@pytest.mark.parametrize(
    ("command", "start_offset"),
    [
        ("serve sales_api:v1 --host 127.0.0.1 --port 41002 ", 0),  # another release's port
        (COMMAND, 1),  # the same command, started at another time: the pid was reused
    ],
)
def test_a_process_that_is_not_the_one_recorded_is_never_adopted(stand_in, command, start_offset):
    start = supervisor.start_time(stand_in.pid)
    assert start is not None
    assert not supervisor.Supervisor._take(
        child(), stand_in.pid, command, {"start": start + start_offset}
    )


def test_a_supervisor_started_over_a_broken_routing_file_stops_nothing_and_exits_2(
    stand_in, tmp_path
):
    (tmp_path / ROUTING_FILE).write_text("{")
    state = {"pid": 1, "router": None, "releases": {"r0001": {"pid": stand_in.pid}}}
    (tmp_path / supervisor.STATE_FILE).write_text(json.dumps(state))
    result = subprocess.run(
        [sys.executable, "-m", "deploy.supervisor", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    time.sleep(0.2)
    assert result.returncode == 2
    assert f"not started: {tmp_path / ROUTING_FILE}: " in result.stdout
    assert stand_in.poll() is None


def test_the_sustained_miss_watch_leaves_a_broken_routing_file_alone(tmp_path):
    (tmp_path / ROUTING_FILE).write_text("{")
    assert supervisor.MissWatch(tmp_path)._pin("r0002", "late") is False
    assert (tmp_path / ROUTING_FILE).read_text() == "{"


LISTEN = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])));"
    " s.listen(); print('up', flush=True); time.sleep(60)"
)


@pytest.fixture
def orphan_worker():
    """Stands in for a BentoML worker whose arbiter died: it holds the release's port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTEN, str(port), "bentoml", "sales_api:v1", "--fd", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    yield port, proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_the_workers_a_dead_release_left_on_its_port_are_stopped(orphan_worker):
    port, proc = orphan_worker
    assert supervisor.stop_workers(port, "sales_api:v1") == [proc.pid]
    assert proc.wait(timeout=10) is not None


def test_workers_of_another_bento_on_the_port_are_left_alone(orphan_worker):
    port, proc = orphan_worker
    assert supervisor.stop_workers(port, "sales_api:v2") == []
    assert proc.poll() is None
