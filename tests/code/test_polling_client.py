"""The pollers' resend (tests/fixtures/polling.py) covers only a connection closed with no
response, once, on a new connection: anything else still counts as a failed request."""

from __future__ import annotations

import socket
import struct
import threading

import httpx
import pytest

from tests.fixtures import polling

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"


def server(closes: int, reset: bool = False) -> str:
    """Closes its first `closes` connections without a byte (with a reset, as a socket closed
    with unread request bytes is, if `reset`), then answers each with 200."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for i in range(closes + 2):
            conn, _ = sock.accept()
            conn.recv(65536)
            if i >= closes:
                conn.sendall(ANSWER)
            elif reset:  # SO_LINGER 0: close() sends RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/predict"


def test_a_connection_closed_without_a_response_is_resent_once_on_a_new_one():
    with httpx.Client(timeout=5) as client:
        r, resent = polling.post(client, server(closes=1), json={})
    assert (r.status_code, r.text, resent) == (200, "ok", 1)


def test_a_second_close_is_a_failure_not_another_resend():
    # A body that arrives after the server's one read turns its close into a reset.
    with (
        httpx.Client(timeout=5) as client,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        polling.post(client, server(closes=2), json={})


def test_a_connection_reset_before_any_response_is_resent_once_on_a_new_one():
    with httpx.Client(timeout=5) as client:
        r, resent = polling.post(client, server(closes=1, reset=True), json={})
    assert (r.status_code, r.text, resent) == (200, "ok", 1)


def test_a_second_reset_is_a_failure_not_another_resend():
    # The kernel reports a reset read either as the reset or, racing it, as a plain close.
    with (
        httpx.Client(timeout=5) as client,
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        polling.post(client, server(closes=2, reset=True), json={})
