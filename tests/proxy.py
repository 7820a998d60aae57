"""A TCP proxy the test controls, between a client and the server: it can drop every
connection, refuse new ones, black-hole traffic while keeping the sockets open, or stall (stop
reading, so that the senders' buffers fill, as behind a peer that froze)."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.blackhole = False
        self.delay = 0.0  # seconds each chunk waits in the proxy, each way (network latency)
        self.accepted = 0
        self.new_connection = asyncio.Event()
        self._flowing = asyncio.Event()  # cleared: nothing is read from either side
        self._flowing.set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._port = 0

    async def start(self, port: int = 0) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return self

    async def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused (ECONNREFUSED)."""
        self._port = self.port
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def listen_again(self) -> None:
        await self.start(self._port)

    @property
    def port(self) -> int:
        assert self._server is not None
        if not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def stall(self) -> None:
        """Stop reading on every connection, old and new; the sockets stay open."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def drop_all(self) -> None:
        """Cut every open connection at once, both sides (as a network failure would)."""
        for client, server in list(self._pairs):
            for w in (client, server):
                w.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.new_connection.set()
        if self.refusing:
            cw.transport.abort()
            return
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.transport.abort()
            return
        pair = (cw, sw)
        self._pairs.add(pair)
        await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw), return_exceptions=True)
        self._pairs.discard(pair)
        for w in pair:
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await self._flowing.wait() and (data := await reader.read(65536)):
                if self.delay:
                    await asyncio.sleep(self.delay)  # the emulated network's latency
                if not self.blackhole:  # black-holed bytes are read and dropped
                    writer.write(data)
                    await writer.drain()
