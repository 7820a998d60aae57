"""Pieces the benchmarks share: a fresh server process and a lean client connection."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

HEADER = struct.Struct(">I")
SECRET = "bench-secret-" + "z" * 32
API_KEY = "bench"


def frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


class Conn(asyncio.Protocol):
    """A lean load-generator connection: frames in, a callback per decoded message."""

    def __init__(self, on_msg: Callable[[dict[str, Any]], None]) -> None:
        self.buf = bytearray()
        self.on_msg = on_msg
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            self.on_msg(json.loads(bytes(buf[pos + 4 : pos + 4 + n])))
            pos += 4 + n
        del buf[:pos]

    def write(self, obj: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(frame(obj))


def start_server(data: Path, **env: str) -> tuple[subprocess.Popen[str], int]:
    """A migrated server on a fresh SQLite database, pinned to CPU 0 when possible; the caller
    should pin itself to CPU 1 (``pin_self``)."""
    full = {
        **os.environ,
        "IMHUB_DATA_DIR": str(data),
        "IMHUB_TOKEN_SECRET": SECRET,
        "IMHUB_API_KEY": API_KEY,
        "IMHUB_LOG_LEVEL": "WARNING",
        "IMHUB_PORT": "0",
        **env,
    }
    subprocess.run(
        [sys.executable, "-m", "imhub", "migrate"], env=full, check=True, capture_output=True
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


def pin_self() -> None:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})


async def add_users(port: int, n: int) -> list[int]:
    import aiohttp

    ids = []
    async with aiohttp.ClientSession() as http:
        for i in range(n):
            async with http.post(
                f"http://127.0.0.1:{port}/api/v1/users",
                json={"username": f"u{i}"},
                headers={"X-Api-Key": API_KEY},
            ) as r:
                ids.append((await r.json())["userId"])
    return ids


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


def run_on_fresh_server(run: Callable[[int], Coroutine[Any, Any, dict[str, Any]]]) -> None:
    """Start a fresh server, pin this process to the other core, run ``run(port)`` under
    uvloop and print its result as one JSON line, with the server's CPU seconds."""
    import tempfile

    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp))
        try:
            pin_self()
            result = uvloop.run(run(port))
        finally:
            server_cpu = stop_server(proc)
        print(json.dumps({**result, "server_cpu_s": server_cpu}))
