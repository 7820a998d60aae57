"""The floor: a minimal relay that stores nothing and checks nothing, measured in the same run
as imhub with the same load generator and pinning, so imhub's figures are read as ratios.

Absolute figures on a shared virtual machine do not carry from one day to the next (the
host's CPU and fsync costs change); a ratio to what the same machine does with no storage at
all does. The relay speaks just enough of imhub's protocol for ``bench.p2p`` and
``bench.fanout``: a login is answered (the token's user id is read, not verified), a chat
gets a per-conversation sequence number, an answer to its sender and a delivery to the
recipient's connections (or to every other member of a group), with the same fields imhub
sends. Two listeners on one loop (uvloop), as the lessons in the team's notes advise:

- TCP: length-prefixed JSON over an ``asyncio.Protocol``, each connection's outgoing frames
  collected and written once per loop tick, one encoding per group message;
- HTTP on a second port (aiohttp, the library imhub uses): WebSocket on ``/ws`` (a plain
  aiohttp relay: ``async for`` over the socket, ``send_bytes`` per frame) and
  ``POST /api/v1/teams/create`` for the group bench.

    python -m bench.floor          # prints "floor tcp PORT http PORT", serves until SIGTERM
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import HEADER, Conn

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class Relay:
    """Who is connected, and the sequence of every conversation."""

    def __init__(self) -> None:
        self.sessions: dict[int, list[Callable[[bytes], None]]] = {}
        self.seqs: dict[tuple[int, int], int] = {}
        self.teams: dict[int, list[int]] = {}
        self.ids = itertools.count(1)

    def handle(self, send: Callable[[bytes], None], msg: dict[str, Any], user: int) -> int:
        """Act on one decoded message from ``user`` (0 before login); returns the user."""
        kind = msg.get("msgType")
        if kind == 1:
            user = _user_of(msg["token"])
            self.sessions.setdefault(user, []).append(send)
            send(_encode({"msgType": 1, "code": 0, "userId": user}))
        elif kind == 3 and user:
            self.chat(send, msg, user)
        elif kind == 0:
            send(_encode({"msgType": 0}))
        return user

    def chat(self, send: Callable[[bytes], None], msg: dict[str, Any], user: int) -> None:
        team = msg.get("teamId") or 0
        to = 0 if team else msg["toUserId"]
        key = (0, team) if team else (min(user, to), max(user, to))
        seq = self.seqs[key] = self.seqs.get(key, 1 if team else 0) + 1
        mid, now = next(self.ids), int(time.time() * 1000)
        address = {"teamId": team} if team else {"chatId": key[0] << 32 | key[1], "toUserId": to}
        send(
            _encode(
                {"msgType": 4, "code": 0, **address, "seq": seq, "msgIdClient": msg["msgIdClient"],
                 "msgIdServer": mid, "sendTime": now}
            )
        )  # fmt: skip
        data = _encode(
            {"msgType": 3, **address, "fromUserId": user, "fromClientType": 2,
             "msgIdClient": msg["msgIdClient"], "msgIdServer": mid, "bodyType": 0,
             "body": msg["body"], "sendTime": now, "seq": seq}
        )  # fmt: skip
        for member in self.teams[team] if team else (to,):
            if member != user:
                for deliver in self.sessions.get(member, ()):
                    deliver(data)

    def leave(self, user: int, send: Callable[[bytes], None]) -> None:
        if user and send in self.sessions.get(user, ()):
            self.sessions[user].remove(send)


def _user_of(token: str) -> int:
    payload = token.split(".")[1]
    claims = _decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["sub"])


class FrameRelay(Conn):
    """One TCP connection: the load generator's own framing (``bench.common.Conn``) reads
    the frames; what the relay sends goes out once per loop tick."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(self._received)
        self.relay = relay
        self.user = 0
        self.loop = asyncio.get_running_loop()

    def _received(self, msg: dict[str, Any]) -> None:
        self.user = self.relay.handle(self.send, msg, self.user)

    def send(self, data: bytes) -> None:
        if not self._out:
            self.loop.call_soon(self.flush)
        self._out += (HEADER.pack(len(data)), data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.leave(self.user, self.send)


def web_app(relay: Relay) -> web.Application:
    outbox: list[tuple[web.WebSocketResponse, bytes]] = []  # frames handle() produced

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)

        def send(data: bytes) -> None:
            outbox.append((ws, data))

        user = 0
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    user = relay.handle(send, _decode(message.data), user)
                    # aiohttp writes each frame as it is sent (and waits when a peer's
                    # buffer is full): the plain way to relay with it.
                    pending = outbox.copy()
                    outbox.clear()
                    for target, data in pending:
                        await target.send_bytes(data)
        finally:
            relay.leave(user, send)
        return ws

    async def team_create(request: web.Request) -> web.Response:
        body = await request.json()
        team = len(relay.teams) + 1
        relay.teams[team] = [body["userId"], *body["memberIds"]]
        return web.json_response({"teamId": team})

    app = web.Application()
    app.router.add_get("/ws", websocket)
    app.router.add_post("/api/v1/teams/create", team_create)
    return app


async def serve() -> None:
    relay = Relay()
    loop = asyncio.get_running_loop()
    tcp = await loop.create_server(lambda: FrameRelay(relay), "127.0.0.1", 0)
    runner = web.AppRunner(web_app(relay), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"floor tcp {tcp.sockets[0].getsockname()[1]} http {http_port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    tcp.close()
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(serve())
