"""WebSocket on ``/ws``: aiohttp does the handshake, reading, pings and closing; each text or
binary message holds one JSON object. Outgoing frames are pre-encoded and written by our
``FrameOutlet`` (the same per-tick batching as TCP, one encoding for every receiver).

Text messages reach us as bytes (``decode_text=False``): the codec checks their UTF-8 with the
JSON, so a message that is not valid UTF-8 is refused with a 400 like any other undecodable
message, and the connection goes on (aiohttp would close it with 1007). It also saves making
a ``str`` of every message only to parse it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from aiohttp import WSMsgType, web

from imhub.protocol.wsframe import ws_frame_header

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway


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

    def close() -> None:
        gateway.spawn(ws.close())

    outlet = gateway.outlet(transport, ws_frame_header, close)
    outlet.drain = request.writer.drain  # aiohttp's protocol gets the flow-control calls
    session = gateway.open_session(outlet)
    loop = asyncio.get_running_loop()
    try:
        async for message in ws:
            session.last_seen = loop.time()
            pending = (
                gateway.receive(session, message.data)
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                else None
            )
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
