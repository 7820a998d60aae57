"""WebSocket on ``/ws``: aiohttp does the handshake, reading, pings and closing; each text or
binary message holds one JSON object. Outgoing frames are pre-encoded and written by our
``FrameOutlet`` (the same per-tick batching as TCP, one encoding for every receiver).

Text messages reach us as bytes (``decode_text=False``): the codec checks their UTF-8 with the
JSON, so a message that is not valid UTF-8 is refused with a 400 like any other undecodable
message, and the connection goes on (aiohttp would close it with 1007). It also saves making
a ``str`` of every message only to parse it.

When the server shuts down, a message taken from aiohttp before the session ended is handled
and answered; the ones after it are dropped (the client sends them again elsewhere)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from aiohttp import WSMsgType, web

from imhub.gateway.outlet import LINGER_QUIET
from imhub.metrics import WEBSOCKET
from imhub.protocol.wsframe import ws_frame_header

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway
    from imhub.service.sessions import Session


async def serve_websocket(request: web.BaseRequest, gateway: Gateway) -> web.StreamResponse:
    ws = web.WebSocketResponse(
        compress=False,
        # aiohttp refuses a message of max_msg_size bytes itself; ours are allowed max_frame.
        max_msg_size=gateway.config.max_frame + 1,
        autoping=True,
        decode_text=False,
    )
    await ws.prepare(request)
    transport = cast(asyncio.Transport, request.transport)  # uvloop's is not a subclass

    closer = _Closer(gateway, ws)
    outlet = gateway.outlet(transport, ws_frame_header, closer)
    outlet.drain = request.writer.drain  # aiohttp's protocol gets the flow-control calls
    gateway.upgraded(request.protocol)
    closer.session = session = gateway.open_session(outlet, WEBSOCKET)
    loop = asyncio.get_running_loop()
    try:
        async for message in ws:
            session.last_seen = loop.time()
            if session.closed or session.ending is not None:  # ended by the server: what
                continue  # comes until the close is dropped
            pending = (
                gateway.receive(session, message.data)
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                else None
            )
            # An idle connection waits here for months: keep nothing of the last message
            # (its JSON, the decoded login with its token, the finished handler) meanwhile.
            del message
            if pending is not None:
                await gateway.working(pending)
                del pending
    finally:
        gateway.close_session(session, WEBSOCKET)
    return ws


class _Closer:
    """The outlet's close of a WebSocket connection: aiohttp's close handshake. (An object
    with slots: a closure and its cells cost a few hundred bytes per connection more.)

    Shutting down, the peer, told to go, closes (aiohttp answers its close frame and closes
    the socket) or goes quiet for ``LINGER_QUIET``, and only then does the server close:
    aiohttp's own close, called while a receive is waiting, closes the socket without reading
    the peer's side of the handshake, and with unread input that is a reset, which can
    destroy the notice before the peer reads it."""

    __slots__ = ("gateway", "session", "ws")

    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session: Session | None = None

    def __call__(self) -> None:
        if self.gateway.draining:
            asyncio.get_running_loop().call_later(LINGER_QUIET, self._linger)
        else:
            self.gateway.spawn(self.ws.close())

    def _linger(self) -> None:
        if self.ws.closed or self.session is None:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self.session.last_seen
        if quiet >= LINGER_QUIET:
            self.gateway.spawn(self.ws.close())
        else:
            loop.call_later(LINGER_QUIET - quiet, self._linger)
