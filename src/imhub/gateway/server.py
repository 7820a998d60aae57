"""The gateway's owner: the listening socket, every open session, the idle sweeper, and the
graceful shutdown.

A shutdown (SIGTERM) stops accepting and reading, lets everything already read be handled,
stored and answered, then tells each client to reconnect elsewhere (error 503) and closes, all
within the grace period; whatever is still open at its end is cut."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from aiohttp import web

from imhub.config import Config
from imhub.gateway.http import HttpConnection
from imhub.gateway.listener import SniffProtocol
from imhub.gateway.outlet import FrameOutlet
from imhub.gateway.tcp import TcpConnection
from imhub.gateway.tls import server_context
from imhub.gateway.websocket import serve_websocket
from imhub.http.responses import error_response
from imhub.logs import AccessLogger, LogLimiter
from imhub.metrics import HTTP, PROTOCOLS, TYPE_SLOTS, Metrics
from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.service.dispatch import Dispatcher
from imhub.service.limits import Limits
from imhub.service.sessions import CATCHING_UP, Session, log_fields

log = logging.getLogger(__name__)

HttpHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

HTTP_BODY_MAX = 1024 * 1024  # bytes of a request body that carries no message

# Malformed HTTP requests logged at most, per minute (the rest are counted).
BAD_REQUEST_LOG_BURST = 10


class Gateway:
    def __init__(
        self,
        config: Config,
        dispatcher: Dispatcher,
        on_close: Callable[[Session], None],
        http_handler: HttpHandler,
        metrics: Metrics,
        limits: Limits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or Limits(config, time.monotonic)
        self.dispatcher = dispatcher
        self._on_close = on_close
        self._http_handler = http_handler
        self.metrics = metrics
        self.tls = server_context(config)  # None: plain only
        self.reuse_port = False  # a worker of `--workers`: the port is shared (SO_REUSEPORT)
        self._msgs_in = metrics.msgs_in
        self.sessions: set[Session] = set()
        self._conn_ids = itertools.count(1)
        self.draining = False  # shutting down: nothing more is read or accepted
        self._deadline = 0.0  # the end of the shutdown's grace period (loop time)
        self._working = 0  # WebSocket handlers being awaited (TCP's are in _tasks)
        self._changed: asyncio.Event | None = None  # during a shutdown: something finished
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._http: web.Server | None = None
        self._bad_requests: LogLimiter | None = None
        self._refusals: LogLimiter | None = None
        self._anonymous: LogLimiter | None = None  # ends of connections that never logged in
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        # A body is read whole before its route; one that carries a message is held to
        # --max-frame by the router, any other to 1 MiB (or --max-frame, if larger).
        body_max = max(HTTP_BODY_MAX, self.config.max_frame)

        def request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=body_max
            )

        self._http = web.Server(self._route_http, request_factory=request)
        self._bad_requests = LogLimiter(BAD_REQUEST_LOG_BURST, 60.0, loop.time)
        self._refusals = LogLimiter(BAD_REQUEST_LOG_BURST, 60.0, loop.time)
        self._anonymous = LogLimiter(BAD_REQUEST_LOG_BURST, 60.0, loop.time)
        self._server = await self._loop.create_server(
            lambda: SniffProtocol(self),
            self.config.host,
            self.config.port,
            backlog=4096,
            reuse_port=self.reuse_port or None,
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="imhub-sweeper")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self, grace: float) -> None:
        """Stop within ``grace`` seconds: accept and read nothing more; let every message read
        so far be handled, stored and answered; then send each client a 503 ("reconnect
        elsewhere") after its last answer and close; cut what is still open at the end."""
        if self._loop is None:  # never started
            return
        loop = self._loop
        self._deadline = loop.time() + grace
        self.draining = True
        self._changed = asyncio.Event()
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        log.info("shutting down: %d connections, within %g s", len(self.sessions), grace)
        for session in self.sessions:
            _outlet(session).pause_reading()
        settled = await self._settle()
        for session in list(self.sessions):
            session.end(ErrorCode.SHUTTING_DOWN, "server is shutting down")
            # The peer's last bytes and its side of the close are read (and dropped).
            _outlet(session).resume_reading()
        await self._until_closed()
        left = list(self.sessions)
        for session in left:
            _outlet(session).abort()
        if self._http is not None:
            await self._http.shutdown(max(0.05, self._deadline - loop.time()))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not settled:
            log.warning("the grace period ended before every message read was answered")
        elif left:
            log.info("cut %d connections that did not close after the notice", len(left))

    def hurry(self) -> None:
        """End the grace period now (a second SIGTERM or SIGINT)."""
        if self._loop is not None and self._changed is not None:
            self._deadline = self._loop.time()
            self._changed.set()

    async def _settle(self) -> bool:
        """Wait until every handler started has finished and every send read has its answer
        (in rounds: a finished handler lets a connection handle the frames it had read)."""
        while True:
            waits: list[Awaitable[Any]] = [t for t in self._tasks if not t.done()]
            for session in self.sessions:
                if session.inflight is not None:
                    answered = session.inflight.all_answered()
                    if answered is not None:
                        waits.append(answered)
            if not waits and not self._working:
                return True
            if not await self._wait(
                asyncio.gather(*waits, return_exceptions=True) if waits else None
            ):
                return False

    async def _until_closed(self) -> None:
        while self.sessions and await self._wait(None):
            pass

    async def _wait(self, work: asyncio.Future[Any] | None) -> bool:
        """Until ``work`` is done or something changed (a connection closed, a handler
        finished, a hurry); False once the grace period is over. ``work`` is not cancelled:
        what is still running then is cut with its connection."""
        assert self._loop is not None and self._changed is not None
        remaining = self._deadline - self._loop.time()
        if remaining > 0:
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            waits: list[asyncio.Future[Any]] = [changed] if work is None else [changed, work]
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        return self._loop.time() < self._deadline

    async def working(self, pending: Awaitable[None]) -> None:
        """Await a WebSocket handler's awaitable, counted so that a shutdown waits for it."""
        self._working += 1
        try:
            await pending
        finally:
            self._working -= 1
            if self._changed is not None:
                self._changed.set()

    def outlet(
        self,
        transport: asyncio.Transport,
        header: Callable[[int], bytes],
        closer: Callable[[], None],
    ) -> FrameOutlet:
        cfg = self.config
        return FrameOutlet(
            transport, header, cfg.outbound_limit, closer, self.metrics, cfg.login_timeout
        )

    def open_session(self, outlet: FrameOutlet, protocol: int) -> Session:
        assert self._loop is not None
        session = Session(outlet, self._loop.time(), next(self._conn_ids))
        self.sessions.add(session)
        self.metrics.opened[protocol] += 1
        return session

    def upgraded(self, connection: object) -> None:
        """An HTTP connection became a WebSocket one: counted as that from now on."""
        if isinstance(connection, HttpConnection) and not connection.upgraded:
            connection.upgraded = True
            self.metrics.closed[HTTP] += 1

    def close_session(self, session: Session, protocol: int) -> None:
        """The connection is gone: presence goes, and one log line says why."""
        if session not in self.sessions:
            return
        by_server = session.closed
        self.sessions.discard(session)
        self._on_close(session)
        self.metrics.closed[protocol] += 1
        outlet = _outlet(session)
        slow = outlet.dropped or session.ended == (ErrorCode.SLOW_CONSUMER, CATCHING_UP)
        if slow:
            self.metrics.slow_consumers += 1
        level = logging.WARNING if slow else logging.INFO
        left_out: int | None = 0
        if session.user_id is None and log.isEnabledFor(level):
            # Peers that never logged in: anyone can make thousands, so a few lines a minute.
            assert self._anonymous is not None
            left_out = self._anonymous.allow()
        if left_out is not None and log.isEnabledFor(level):
            if outlet.dropped:
                reason = f"slow consumer: over {outlet.limit} bytes unread"
            elif session.ended is not None:
                reason = f"{session.ended[0]} {session.ended[1]}"
            else:
                reason = "closed by the server" if by_server else "closed by the peer"
            if left_out:
                reason += f" ({left_out} more ends of connections without a login not logged)"
            assert self._loop is not None
            log.log(
                level,
                "connection closed",
                extra={
                    **log_fields(session),
                    "protocol": PROTOCOLS[protocol],
                    "reason": reason,
                    "seconds": round(self._loop.time() - session.opened, 3),
                },
            )
        if self._changed is not None:
            self._changed.set()

    def receive(self, session: Session, payload: bytes) -> Awaitable[None] | None:
        """One message from a connection, whichever transport: decoded and handled, or refused
        with an error frame. Nothing a peer sends raises out of here, so one bad message
        never costs the connection, nor the messages after it."""
        try:
            msg = codec.decode(payload)
        except ImError as exc:
            if not self._limited(session, exc.msg_id_client):  # junk counts too
                Dispatcher.refuse(session, exc)
            return None
        t = msg.msg_type
        self._msgs_in[t if t < TYPE_SLOTS else TYPE_SLOTS - 1] += 1
        if self._limited(session, msg.msg_id_client):
            return None
        return self.dispatcher.handle(session, msg)

    def _limited(self, session: Session, msg_id_client: str | None) -> bool:
        """Over the connection's or the user's message rate: refused before anything is done
        with it (the client may send it again, same msgIdClient, later); one that keeps
        sending into the refusals is closed."""
        budget = session.budget
        if budget is None:
            budget = session.budget = self.limits.budget(_outlet(session).peername)
        allowed = self.limits.message(budget, session.user_id)
        if allowed:
            return False
        self.metrics.rate_limited += 1
        session.error(ErrorCode.TOO_MANY, "too many messages: slow down", msg_id_client)
        if allowed is None:
            session.end(ErrorCode.TOO_MANY, "too many messages: closed")
        return True

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """A new connection, counted against the connection limits; False (not counted): it
        is to be closed at once, before anything is read from it."""
        refused = self.limits.admit(transport.get_extra_info("peername"))
        if refused is None:
            return True
        self.metrics.refused_connections += 1
        assert self._refusals is not None
        dropped = self._refusals.allow()
        if dropped is not None:
            more = f" ({dropped} more not logged)" if dropped else ""
            peer = transport.get_extra_info("peername")
            log.warning("connection from %s refused: too many %s%s", peer, refused, more)
        return False

    def release(self, peer: object) -> None:
        """The connection from ``peer`` (its ``peername`` when it was made: a closed TLS
        transport no longer tells it) admitted by ``admit`` is gone; called again, nothing
        happens."""
        self.limits.release(peer)

    async def _route_http(self, request: web.BaseRequest) -> web.StreamResponse:
        response = await self._answer_http(request)
        if response.status >= 400:
            self.metrics.error(response.status, "http")
        return response

    async def _answer_http(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.config.tls_only and not request.secure:
            return _tls_required(request)
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
        access: dict[str, Any] = {"access_log": None}  # off unless configured
        if self.config.access_log:
            access = {"access_log": logging.getLogger("imhub.access")}
        return HttpConnection(
            self._http,
            self._bad_requests,
            self.metrics,
            self.release,
            loop=self._loop,
            keepalive_timeout=timeout,
            lingering_time=0,
            access_log_class=AccessLogger,
            **access,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a task the gateway owns (and cancels on stop)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
                    s.end(ErrorCode.UNAUTHORIZED, "token expired")
                elif s.user_id is None and now - s.opened > cfg.login_timeout:
                    s.end(ErrorCode.TIMEOUT, f"no login within {cfg.login_timeout:g} s")
                elif now - s.last_seen > cfg.idle_timeout:
                    s.end(ErrorCode.TIMEOUT, f"idle for over {cfg.idle_timeout:g} s")


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


def _tls_required(request: web.BaseRequest) -> web.StreamResponse:
    """A plain request to a server that takes TLS only: a page or a file is redirected to the
    same address over https (as a browser would want); anything else is refused, since
    following a redirect would send its body, maybe its key, in the clear once more."""
    if request.method in ("GET", "HEAD") and request.path != "/ws":
        response = web.StreamResponse(status=308)
        response.headers["Location"] = f"https://{request.host}{request.path_qs}"
        return response
    return error_response(403, "this server takes TLS connections only: https:// or wss://")


def _outlet(session: Session) -> FrameOutlet:
    return cast(FrameOutlet, session.outlet)  # the gateway made it
