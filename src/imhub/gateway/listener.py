"""The one-port listener: looks at a connection's first byte and hands the live transport to
aiohttp's HTTP server (API, browser client, WebSocket upgrade) or to our TCP frame protocol,
passing along the bytes already read."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from imhub.protocol.sniff import Wire, sniff

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway


class SniffProtocol(asyncio.Protocol):
    __slots__ = ("_gateway", "_timer", "_transport")

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._gateway.admit(transport):  # over a connection limit: nothing is read
            transport.abort()
            return
        # A peer that connects and never speaks is closed like one that never logs in.
        self._timer = asyncio.get_running_loop().call_later(
            self._gateway.config.login_timeout, transport.close
        )

    def data_received(self, data: bytes) -> None:
        wire = sniff(data)
        if wire is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        protocol: asyncio.Protocol = (
            self._gateway.http_protocol() if wire is Wire.HTTP else self._gateway.tcp_protocol()
        )
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._gateway.release(self._transport)
