"""The one-port listener: looks at a connection's first byte and hands the live transport to
aiohttp's HTTP server (API, browser client, WebSocket upgrade) or to our TCP frame protocol,
passing along the bytes already read. A TLS ClientHello gets the TLS handshake first, then a
listener of its own inside TLS that looks at the first byte of the plaintext the same way."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from imhub.gateway.tls import NO_TLS_ALERT, start_tls
from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode
from imhub.protocol.framing import encode_frame
from imhub.protocol.sniff import Wire, sniff

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway

# The answer to a plain TCP frame connection when the server takes TLS only.
TLS_REQUIRED = encode_frame(
    codec.encode(
        codec.error_msg(ErrorCode.FORBIDDEN, "this server takes TLS connections only: tcps://")
    )
)


class SniffProtocol(asyncio.Protocol):
    __slots__ = ("_gateway", "_peer", "_secure", "_timer", "_transport")

    def __init__(self, gateway: Gateway, secure: bool = False) -> None:
        self._gateway = gateway
        self._secure = secure  # inside TLS
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")  # a TLS transport forgets it
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
        gateway = self._gateway
        if wire is Wire.TLS:
            if self._secure:  # a handshake record inside TLS: no protocol of ours
                wire = Wire.FRAMES
            elif gateway.tls is None:
                self._transport.write(NO_TLS_ALERT)
                self._transport.close()
                return
            else:
                peer = self._peer
                start_tls(
                    self._transport,
                    data,
                    SniffProtocol(gateway, secure=True),
                    gateway.tls,
                    gateway.config.login_timeout,
                    lambda: gateway.release(peer),  # counted from accept; now gone
                )
                return
        if wire is Wire.FRAMES and gateway.config.tls_only and not self._secure:
            self._transport.write(TLS_REQUIRED)
            self._transport.close()
            return
        protocol: asyncio.Protocol = (
            gateway.http_protocol() if wire is Wire.HTTP else gateway.tcp_protocol()
        )
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._gateway.release(self._peer)
