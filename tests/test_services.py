"""The test services themselves: Redis answers, stops and comes back on the same port (the
cluster's tests restart it mid-stream), and is gone once stopped."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.services import Redis, alive


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_redis_stops_and_restarts_on_its_port(tmp_path: Path) -> None:
    redis = Redis(tmp_path)
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0" and ping(redis.port)
    first = redis.pid
    redis.restart()
    assert redis.pid != first and not alive(first) and ping(redis.port)
    redis.stop()
    assert not redis.running and not ping(redis.port)
