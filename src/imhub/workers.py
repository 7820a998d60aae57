"""``imhub serve --workers N``: N node processes sharing one port, so that one machine's cores
all serve.

Each worker is an ordinary cluster node (its own event loop, writer and connections) started
as ``imhub serve`` with the same options; the kernel spreads new connections between them
(SO_REUSEPORT) and the cluster bus makes them one server. The parent binds the port first
(to learn it when 0 was asked for, and to keep it while workers come and go), never listens
on it, forwards SIGTERM and SIGINT, and exits when the workers have.

A worker that dies after it served is started again (its clients reconnect to the others
meanwhile, and nothing they were answered is lost: the database has it); one that fails before
it listens stops everything, since its siblings would fail alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from imhub.config import Config

log = logging.getLogger("imhub")

RESTART_PAUSE = 1.0  # s before a dead worker is started again


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening socket with SO_REUSEPORT: the workers' listeners share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Workers:
    def __init__(self, config: Config, argv: Sequence[str]) -> None:
        self._config = config
        self._argv = list(argv)  # the parent's own options: the workers get the same
        self._stopping = False
        self._procs: dict[int, asyncio.subprocess.Process] = {}

    def _command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "imhub", "serve", *self._argv,
            "--workers", "1", "--port", str(port), "--reuse-port",
        ]  # fmt: skip

    async def run(self) -> int:
        config = self._config
        try:
            reserved = reserve_port(config.host, config.port)
        except OSError as exc:
            raise SystemExit(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        port = reserved.getsockname()[1]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._forward, sig)
        try:
            started = await asyncio.gather(*(self._start(i, port) for i in range(config.workers)))
            if not all(started):
                self._forward(signal.SIGTERM)
                await self._wait_all()
                return 1
            print(f"imhub listening on {config.host}:{port}", flush=True)
            log.info("imhub: %d workers on %s:%d", config.workers, config.host, port)
            return await self._supervise(port)
        finally:
            reserved.close()

    async def _start(self, index: int, port: int) -> bool:
        proc = await asyncio.create_subprocess_exec(
            *self._command(port), stdout=asyncio.subprocess.PIPE, env=os.environ.copy()
        )
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        if not line.startswith("imhub listening on"):
            await proc.wait()
            log.error("worker %d did not start (exit code %s)", index, proc.returncode)
            return False
        self._procs[index] = proc
        return True

    async def _supervise(self, port: int) -> int:
        while self._procs:
            waits = {asyncio.ensure_future(p.wait()): i for i, p in self._procs.items()}
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
            for fut in done:
                index = waits[fut]
                code = self._procs.pop(index).returncode
                if self._stopping:
                    continue
                log.error("worker %d exited (code %s); starting it again", index, code)
                await asyncio.sleep(RESTART_PAUSE)
                if not self._stopping and not await self._start(index, port):
                    self._forward(signal.SIGTERM)
                    await self._wait_all()
                    return 1
        return 0

    def _forward(self, sig: int) -> None:
        self._stopping = True
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.send_signal(sig)

    async def _wait_all(self) -> None:
        for proc in list(self._procs.values()):
            await proc.wait()
