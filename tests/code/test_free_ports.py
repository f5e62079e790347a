"""Ports for our servers are picked where no client connection can take them first."""

from __future__ import annotations

import socket

import pytest

from core import process
from core.process import free_block, free_port
from tests.conftest import worker_ports


def test_a_free_port_lies_below_the_kernels_ephemeral_range_and_can_be_bound():
    low = process._ephemeral_low()
    for _ in range(50):
        port = free_port()
        assert process.LOWEST_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_free_block_is_consecutive_free_ports_and_skips_a_taken_one(monkeypatch):
    # Which ports are taken is stated, not probed: a real one next to a port in use may be
    # taken by any connection on a busy machine. (Real binding: the test above.)
    taken = {20001}
    monkeypatch.setenv(process.PORTS_ENV, "20000-20010")
    monkeypatch.setattr(process, "_bindable", lambda host, port: port not in taken)
    picks = iter([20000, 20002])  # the first block holds the taken port: it must be skipped
    monkeypatch.setattr(process.random, "SystemRandom", lambda: _Fixed(picks))
    assert free_block(2) == 20002


def test_no_free_block_is_a_clear_error_not_a_loop(monkeypatch):
    monkeypatch.setattr(process, "_bindable", lambda host, port: False)
    with pytest.raises(process.ServerError, match=r"no 3 free consecutive ports on 127.0.0.1"):
        free_block(3)


class _Fixed:
    def __init__(self, picks):
        self.picks = picks

    def randrange(self, start, stop):
        return next(self.picks)


def test_the_port_range_can_be_narrowed_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv(process.PORTS_ENV, "12000-12010")
    assert all(12000 <= free_port() < 12010 for _ in range(20))
    for bad in ("12000", "a-b", "12010-12000", "80-90"):
        monkeypatch.setenv(process.PORTS_ENV, bad)
        with pytest.raises(process.ServerError, match=rf"BENTOGATE_PORTS='{bad}'"):
            free_port()


def test_test_workers_pick_ports_from_parts_of_the_range_that_do_not_overlap():
    parts = [worker_ports(f"gw{i}", 3, 10000, 32768) for i in range(3)]
    assert parts == ["10000-17589", "17589-25178", "25178-32767"]  # [low, high): no overlap
