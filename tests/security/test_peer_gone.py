"""A peer that hangs up before its answer is written is nobody's bug: the server logs no
traceback for it (found by the fuzzer: a WebSocket handshake whose sender half-closed at
once made aiohttp's handshake answer fail, logged as an ERROR with its traceback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.databases import Databases
from tests.e2e.test_bad_input import WatchedServer, assert_quiet
from tests.helpers import TIMEOUT
from tests.security.mutations import WS_HANDSHAKE

REQUESTS = [
    WS_HANDSHAKE,
    WS_HANDSHAKE + b"\x81\x85abcd" + b"x" * 5,
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[WatchedServer]:
    proc = WatchedServer(tmp_path_factory.mktemp("gone"), databases)
    yield proc
    proc.stop()


@pytest.mark.parametrize("how", ["half-close", "reset"])
def test_a_request_whose_sender_is_gone_logs_no_traceback(server: WatchedServer, how: str) -> None:
    for _ in range(3):
        for request in REQUESTS:
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
                sock.sendall(request)
                if how == "half-close":
                    sock.shutdown(socket.SHUT_WR)
                else:  # linger 0: the close is a reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    # the server still answers, and has logged everything by the time it has
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    assert_quiet(server.log())
