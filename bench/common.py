"""Pieces the benchmarks share: a fresh server process and a lean client connection."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import sqlite3
import ssl
import struct
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

HEADER = struct.Struct(">I")
# msgspec on the load generator's side too: with the standard library's json it, not the
# server, would set the pace of the floor relay (bench/floor.py).
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
SECRET = "bench-secret-" + "z" * 32
API_KEY = "bench"
CAPACITY = {"IMHUB_MSG_RATE": "0", "IMHUB_USER_MSG_RATE": "0", "IMHUB_API_RATE": "0"}


def frame(obj: dict[str, Any]) -> bytes:
    data = _encode(obj)
    return HEADER.pack(len(data)) + data


class Conn(asyncio.Protocol):
    """A lean load-generator connection over TCP frames: a callback per decoded message.

    Writes made in one loop tick go out together (``write`` queues, ``flush`` runs once per
    tick), so the load generator is not the bottleneck."""

    def __init__(self, on_msg: Callable[[dict[str, Any]], None]) -> None:
        self.buf = bytearray()
        self.on_msg = on_msg
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            self.on_msg(_decode(buf[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        del buf[:pos]

    def write(self, obj: dict[str, Any]) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(self.encode(obj))

    def flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._out)
        self._out.clear()

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return frame(obj)


class WsConn(Conn):
    """The same over WebSocket: a minimal client handshake, frames masked with a zero key
    (valid, and free to apply), unmasked server frames parsed by hand."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._upgraded = False
        transport.write(  # type: ignore[attr-defined]
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            assert buf.startswith(b"HTTP/1.1 101"), bytes(buf[:80])
            del buf[: end + 4]
            self._upgraded = True
            self.ready.set_result(None)
        pos = 0
        while len(buf) - pos >= 2:
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if len(buf) - start < n:
                break
            if buf[pos] & 0x0F in (1, 2):
                self.on_msg(_decode(buf[start : start + n]))
            pos = start + n
        del buf[:pos]

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        data = _encode(obj)
        n = len(data)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        return head + b"\0\0\0\0" + data


@functools.cache
def client_tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ["BENCH_TLS_CA"])


async def connect(
    transport: str,
    port: int,
    on_msg: Callable[[dict[str, Any]], None],
    local_host: str | None = None,
) -> Conn:
    """A ready connection (``tcp``, ``ws``, or over TLS ``tcps``, ``wss``: trusting the CA in
    ``BENCH_TLS_CA``), optionally from another loopback address."""
    kind = WsConn if transport in ("ws", "wss") else Conn
    local = (local_host, 0) if local_host else None
    tls = client_tls() if transport in ("tcps", "wss") else None
    _, conn = await asyncio.get_running_loop().create_connection(
        lambda: kind(on_msg), "127.0.0.1", port, local_addr=local, ssl=tls
    )
    await conn.ready
    return conn


def start_server(
    data: Path, users: int = 0, database: Path | None = None, **env: str
) -> tuple[subprocess.Popen[str], int]:
    """A migrated server on a fresh SQLite database with ``users`` users (ids 1 to N), pinned
    to CPU 0 when possible; the caller should pin itself to CPU 1 (``pin_self``).

    ``database``: start from a copy of that SQLite file instead (a grown one made by
    ``bench.history``), so every run starts from the same rows; users it lacks are added."""
    if database is not None:
        copy_database(database, data / "imhub.db")
    full = {
        **os.environ,
        "IMHUB_DATA_DIR": str(data),
        "IMHUB_TOKEN_SECRET": SECRET,
        "IMHUB_API_KEY": API_KEY,
        "IMHUB_LOG_LEVEL": "WARNING",
        "IMHUB_PORT": "0",
        # Thousands of connections log in at once here; the default 5 s to log in is meant
        # for single clients, not for a benchmark's herd waiting in the writer's queue.
        "IMHUB_LOGIN_TIMEOUT": "120",
        # These measure capacity: a few load-generator connections send as fast as the
        # server answers, far past the per-client message limits (bench/flood.py measures
        # the limits).
        **CAPACITY,
        **env,
    }
    subprocess.run(
        [sys.executable, "-m", "imhub", "migrate"], env=full, check=True, capture_output=True
    )
    if users:
        with sqlite3.connect(data / "imhub.db") as db:
            (have,) = db.execute("select coalesce(max(user_id), 0) from users").fetchone()
            db.executemany(
                "insert into users (username, mobile, head_img) values (?, '', '')",
                [(f"u{i}",) for i in range(have + 1, users + 1)],
            )
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    # BENCH_PROFILE=FILE runs the server under cProfile and writes its profile there on exit.
    profile = (
        ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
        if "BENCH_PROFILE" in os.environ
        else []
    )
    proc = subprocess.Popen(
        [*pin, sys.executable, *profile, "-m", "imhub", "serve"],
        env=full,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().rsplit(":", 1)[1])


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (its WAL included), through SQLite's own
    backup: a plain file copy would miss what is still in the WAL."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst, pages=65536)
    with sqlite3.connect(target) as dst:
        dst.execute("pragma journal_mode=wal")


def pin_self() -> None:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})


async def post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", json=body, headers={"X-Api-Key": API_KEY}) as r,
    ):
        return dict(await r.json())


def stop_server(proc: subprocess.Popen[str]) -> float:
    """Stop the server; returns the CPU seconds it used."""
    before = sum(os.times()[2:4])
    proc.terminate()
    proc.wait(10)
    return round(sum(os.times()[2:4]) - before, 2)


def run_on_fresh_server(
    run: Callable[..., Coroutine[Any, Any, dict[str, Any]]],
    users: int = 0,
    database: Path | None = None,
) -> dict[str, Any]:
    """Start a fresh server, pin this process to the other core, run ``run(port)`` under
    uvloop; returns its result with the server's and this process's CPU seconds.
    ``database``: on a copy of that grown SQLite file (``start_server``)."""
    import tempfile
    import time

    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), users, database)
        try:
            pin_self()
            cpu = time.process_time()
            result = uvloop.run(run(port, proc.pid))
            loadgen_cpu = round(time.process_time() - cpu, 2)
        finally:
            server_cpu = stop_server(proc)
    return {**result, "server_cpu_s": server_cpu, "loadgen_cpu_s": loadgen_cpu}


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def replace_section(path: Path, family: str, section: str) -> None:
    """Put ``section`` in place of the file's ``<!-- family -->…<!-- /family -->`` section
    (docs/bench-results.md keeps one per bench family), or at the end of the file."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    found = re.search(rf"<!-- {family} -->.*?<!-- /{family} -->\n", text, re.S)
    if found:
        text = text[: found.start()] + section + text[found.end() :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
