"""One connection to the server, over TCP frames or WebSocket, with the same small API."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from imhub.protocol.framing import FrameDecoder, encode_frame


class Link(Protocol):
    async def send(self, payload: bytes) -> None: ...

    async def recv(self) -> bytes | None:
        """The next message, or None once the connection is closed."""

    async def close(self) -> None: ...


class TcpLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_frame=16 * 1024 * 1024)
        self._ready: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        self._writer.write(encode_frame(payload))
        await self._writer.drain()

    async def recv(self) -> bytes | None:
        while not self._ready:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.pop(0)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class WsLink:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws

    async def send(self, payload: bytes) -> None:
        await self._ws.send_str(payload.decode())

    async def recv(self) -> bytes | None:
        msg = await self._ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return str(msg.data).encode()
        if msg.type == aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        return None

    async def close(self) -> None:
        await self._ws.close()
        await self._http.close()


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
