"""One connection to the server, over TCP frames or WebSocket, with the same small API.

Writes never wait (``write`` queues a message); ``drained()`` waits until what was queued has
left (back-pressure for the caller that wants it); ``abort()`` drops the connection at once,
discarding what the peer never read, which is how a dead link is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from imhub.protocol.framing import FrameDecoder, encode_frame

CLOSE_WITHIN = 2.0  # s: a deliberate close that the peer does not complete is then aborted


class Link(Protocol):
    def write(self, payload: bytes) -> None:
        """Queue one message."""

    async def drained(self) -> None:
        """Until everything queued has been written out (or the link is gone)."""

    async def recv(self) -> bytes | None:
        """The next message, or None once the connection is closed."""

    async def close(self) -> None:
        """Close politely (bounded by ``CLOSE_WITHIN``), then abort."""

    def abort(self) -> None: ...


class TcpLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_frame=16 * 1024 * 1024)
        self._ready: deque[bytes] = deque()

    def write(self, payload: bytes) -> None:
        if not self._writer.transport.is_closing():
            self._writer.write(encode_frame(payload))

    async def drained(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    async def recv(self) -> bytes | None:
        while not self._ready:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    async def close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        self._writer.transport.abort()


class WsLink:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self._queue: deque[bytes] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._sender = asyncio.create_task(self._send_queued())

    def write(self, payload: bytes) -> None:
        self._queue.append(payload)
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        await self._idle.wait()

    async def _send_queued(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    await self._ws.send_str(self._queue.popleft().decode())
                self._idle.set()
        except (ConnectionError, OSError, RuntimeError, aiohttp.ClientError):
            self._idle.set()  # gone: the reader sees it and the session reconnects
        finally:
            self._idle.set()

    async def recv(self) -> bytes | None:
        msg = await self._ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        return None

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                await self._ws.close()
        except (TimeoutError, ConnectionError, OSError, aiohttp.ClientError):
            self.abort()
        self._sender.cancel()
        await self._http.close()

    def abort(self) -> None:
        self._sender.cancel()
        self._idle.set()
        # aiohttp closes a WebSocket only politely; the transport underneath is dropped here
        # so that a peer that never reads cannot keep the socket and its buffers alive.
        response = getattr(self._ws, "_response", None)
        connection = getattr(response, "connection", None)
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abort()
        asyncio.get_running_loop().create_task(self._http.close())


async def open_link(url: str, within: float, ssl_context: ssl.SSLContext | None = None) -> Link:
    """Connect to ``tcp://host:port``, ``tcps://`` (TLS), ``ws://host:port/ws`` or ``wss://``."""
    parts = urlsplit(url)
    if parts.scheme in ("tcp", "tcps"):
        use_ssl = ssl_context or (ssl.create_default_context() if parts.scheme == "tcps" else None)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port, ssl=use_ssl), within
        )
        return TcpLink(reader, writer)
    if parts.scheme in ("ws", "wss"):
        http = aiohttp.ClientSession()
        try:
            ws = await asyncio.wait_for(
                http.ws_connect(
                    url,
                    timeout=aiohttp.ClientWSTimeout(ws_close=within),
                    ssl=ssl_context if ssl_context is not None else True,
                    max_msg_size=0,
                    autoping=True,
                ),
                within,
            )
        except BaseException:
            await http.close()
            raise
        return WsLink(http, ws)
    raise ValueError(f"unsupported server address {url!r}: use tcp://, tcps://, ws:// or wss://")
