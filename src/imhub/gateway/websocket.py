"""WebSocket on ``/ws``: aiohttp does the handshake, reading, pings and closing; each text or
binary message holds one JSON object. Outgoing frames are pre-encoded and written by our
``FrameOutlet`` (the same per-tick batching as TCP, one encoding for every receiver)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from aiohttp import WSMessage, WSMsgType, web

from imhub.protocol import codec
from imhub.protocol.errors import ImError
from imhub.protocol.wsframe import ws_frame_header
from imhub.service.dispatch import Dispatcher
from imhub.service.sessions import Session

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway


async def serve_websocket(request: web.BaseRequest, gateway: Gateway) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=gateway.config.max_frame, autoping=True)
    await ws.prepare(request)
    transport = cast(asyncio.Transport, request.transport)  # uvloop's is not a subclass

    def close() -> None:
        gateway.spawn(ws.close())

    session = gateway.open_session(gateway.outlet(transport, ws_frame_header, close))
    loop = asyncio.get_running_loop()
    try:
        async for message in ws:
            session.last_seen = loop.time()
            pending = _dispatch(gateway, session, message)
            # An idle connection waits here for months: keep nothing of the last message
            # (its JSON, the decoded login with its token, the finished handler) meanwhile.
            del message
            if pending is not None:
                await pending
                del pending
            if session.closed:
                break
    finally:
        gateway.close_session(session)
    return ws


def _dispatch(gateway: Gateway, session: Session, message: WSMessage) -> Awaitable[None] | None:
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    try:
        msg = codec.decode(message.data)
    except ImError as exc:
        Dispatcher.refuse(session, exc)
        return None
    return gateway.dispatcher.handle(session, msg)
