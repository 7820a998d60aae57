"""The gateway's owner: the listening socket, every open session and the idle sweeper."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from imhub.config import Config
from imhub.gateway.http import HttpConnection, LogLimiter
from imhub.gateway.listener import SniffProtocol
from imhub.gateway.outlet import FrameOutlet
from imhub.gateway.tcp import TcpConnection
from imhub.gateway.websocket import serve_websocket
from imhub.http.responses import error_response
from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.service.dispatch import Dispatcher
from imhub.service.sessions import Session

log = logging.getLogger(__name__)

HttpHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# Malformed HTTP requests logged at most, per minute (the rest are counted).
BAD_REQUEST_LOG_BURST = 10


class Gateway:
    def __init__(
        self,
        config: Config,
        dispatcher: Dispatcher,
        on_close: Callable[[Session], None],
        http_handler: HttpHandler,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self._on_close = on_close
        self._http_handler = http_handler
        self.sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._http: web.Server | None = None
        self._bad_requests: LogLimiter | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._http = web.Server(self._route_http)
        self._bad_requests = LogLimiter(BAD_REQUEST_LOG_BURST, 60.0, loop.time)
        self._server = await self._loop.create_server(
            lambda: SniffProtocol(self), self.config.host, self.config.port, backlog=4096
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="imhub-sweeper")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, tell every session the server is going, close them."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions):
            session.error(ErrorCode.SHUTTING_DOWN, "server is shutting down")
            session.close()
        if self._http is not None:
            await self._http.shutdown(1.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def outlet(
        self,
        transport: asyncio.Transport,
        header: Callable[[int], bytes],
        closer: Callable[[], None],
    ) -> FrameOutlet:
        cfg = self.config
        return FrameOutlet(transport, header, cfg.max_outbound, closer, cfg.login_timeout)

    def open_session(self, outlet: FrameOutlet) -> Session:
        assert self._loop is not None
        session = Session(outlet, self._loop.time())
        self.sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self._on_close(session)

    def receive(self, session: Session, payload: bytes) -> Awaitable[None] | None:
        """One message from a connection, whichever transport: decoded and handled, or refused
        with an error frame. Nothing a peer sends raises out of here, so one bad message
        never costs the connection, nor the messages after it."""
        try:
            msg = codec.decode(payload)
        except ImError as exc:
            Dispatcher.refuse(session, exc)
            return None
        return self.dispatcher.handle(session, msg)

    async def _route_http(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/ws":
            refused = _not_a_handshake(request)
            if refused is not None:
                return refused
            try:
                return await serve_websocket(request, self)
            except web.HTTPException as exc:  # not a WebSocket handshake
                return error_response(exc.status, (exc.text or exc.reason).split("\n", 1)[0])
        try:
            # The body, like the head, must arrive in time (a request trickled in is cut).
            async with asyncio.timeout(self.config.login_timeout):
                await request.read()  # kept by the request for the handler
        except TimeoutError:
            return error_response(ErrorCode.TIMEOUT, "the request did not arrive in time")
        except web.HTTPException as exc:  # a body over the limit
            return error_response(exc.status, exc.text or exc.reason)
        except Exception:  # a body its Content-Encoding does not decode (a bad gzip stream)
            return error_response(ErrorCode.BAD_REQUEST, "the request body cannot be decoded")
        return await self._http_handler(request)

    def stats(self) -> dict[str, int]:
        return {"connections": len(self.sessions)}

    def tcp_protocol(self) -> TcpConnection:
        return TcpConnection(self)

    def http_protocol(self) -> HttpConnection:
        assert self._http is not None and self._bad_requests is not None
        timeout = self.config.login_timeout
        # aiohttp closes a connection whose next request is not complete within its keep-alive
        # timeout, counted from the first byte or the last response: our login deadline. A body
        # is read whole before its request is handled; one that was not (too slow, too large,
        # undecodable) ends the connection at once instead of being read and thrown away
        # (lingering), which kept a refused connection open and re-raised a bad body's error.
        return HttpConnection(
            self._http,
            self._bad_requests,
            loop=self._loop,
            keepalive_timeout=timeout,
            lingering_time=0,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a task the gateway owns (and cancels on stop)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Close connections that did not log in in time, have gone silent, or whose token
        expired (at most a sweep interval, one second, after its ``exp``)."""
        cfg = self.config
        interval = max(0.05, min(1.0, cfg.login_timeout / 4, cfg.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            assert self._loop is not None
            now = self._loop.time()
            wall = time.time()  # token expiries are wall-clock times
            for s in list(self.sessions):
                if s.expires is not None and wall >= s.expires:
                    log.info("closing a session of user %s: its token expired", s.user_id)
                    s.end(ErrorCode.UNAUTHORIZED, "token expired")
                elif s.user_id is None and now - s.opened > cfg.login_timeout:
                    s.error(ErrorCode.TIMEOUT, f"no login within {cfg.login_timeout:g} s")
                    s.close()
                elif now - s.last_seen > cfg.idle_timeout:
                    s.error(ErrorCode.TIMEOUT, f"idle for over {cfg.idle_timeout:g} s")
                    s.close()


def _not_a_handshake(request: web.BaseRequest) -> web.StreamResponse | None:
    """The answer to a request on ``/ws`` that is no WebSocket handshake at all: another method
    (405), or a GET without ``Upgrade: websocket`` (426, which says to upgrade). A handshake
    that is wrong in its details is aiohttp's to refuse (400)."""
    if request.method != "GET":
        response = error_response(405, "/ws takes GET, as a WebSocket handshake")
        response.headers["Allow"] = "GET"
        return response
    if request.headers.get("Upgrade", "").lower() != "websocket":
        response = error_response(426, "/ws is a WebSocket endpoint: send Upgrade: websocket")
        response.headers["Upgrade"] = "websocket"
        return response
    return None
