"""The TCP frame protocol: length-prefixed JSON frames on a raw socket.

Reading stops while a handler that must finish first (login, chat_enter) is running, and
while the socket's send buffer is above its high-water mark, so a client that sends without
reading cannot make the server buffer without bound.

Nothing a peer sends raises out of this protocol: each payload becomes an answer or an error
frame (``Gateway.receive``), and the frames after a bad one, even in the same read, are handled
in order. Only a frame length over the limit ends the connection (413).

When the server shuts down, the frames already read are still handled, then the peer gets the
end of the stream after the last answer (``close``) while what it still sends is read and
dropped: a socket closed with unread input sends a reset, which can destroy the answers the
peer has not read yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from imhub.gateway.outlet import LINGER_QUIET, Writable
from imhub.metrics import TCP
from imhub.protocol.errors import ImError
from imhub.protocol.framing import FrameDecoder, frame_header
from imhub.service.dispatch import Dispatcher

if TYPE_CHECKING:
    from imhub.gateway.server import Gateway

WRITE_HIGH_WATER = 64 * 1024


class TcpConnection(asyncio.Protocol):
    __slots__ = (
        "_busy",
        "_decoder",
        "_gateway",
        "_inbox",
        "_linger_end",
        "_loop",
        "_next",
        "_peer",
        "_transport",
        "_writable",
        "_write_paused",
        "session",
    )

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._decoder = FrameDecoder(gateway.config.max_frame)
        # Frames not yet handled, from _next on; an ImError ends the stream where it stands.
        self._inbox: list[bytes | ImError] = []
        self._next = 0
        self._busy = False
        self._write_paused = False
        self._writable = Writable()  # for producers that wait for the peer (login backlog)
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        outlet = self._gateway.outlet(transport, frame_header, self.close)
        outlet.drain = self._writable
        self.session = self._gateway.open_session(outlet, TCP)

    def close(self) -> None:
        """The outlet's close, once what is queued is written: the end of the stream (the
        peer reads every answer, then EOF), then reading and dropping whatever the peer still
        sends until it closes, goes quiet for ``LINGER_QUIET``, or the login timeout passes.
        A plain close with unread input would send a reset, which can destroy the last
        answers (a "user deleted", a 413) before the peer reads them. A connection cut for
        flooding is closed at once: reading it on would cost more than its last answers."""
        transport = self._transport
        if transport.is_closing():
            return
        budget = self.session.budget
        if (budget is not None and budget.cut) or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already (asyncio's own loop says so; uvloop not)
            transport.close()
            return
        transport.resume_reading()
        self._linger_end = self._loop.time() + self._gateway.config.login_timeout
        self._loop.call_later(LINGER_QUIET, self._linger)

    def _linger(self) -> None:
        if self._transport.is_closing():
            return
        now = self._loop.time()
        quiet = now - self.session.last_seen
        if quiet >= LINGER_QUIET or now >= self._linger_end:
            self._transport.close()
        else:
            self._loop.call_later(min(LINGER_QUIET - quiet, self._linger_end - now), self._linger)

    def data_received(self, data: bytes) -> None:
        self.session.last_seen = self._loop.time()
        frames, broken = self._decoder.receive(data)
        self._inbox += frames
        if broken is not None:  # a bad length: the stream cannot be trusted any more
            self._inbox.append(broken)
        if not self._busy:
            self._process()

    def _process(self) -> None:
        receive = self._gateway.receive
        session = self.session
        inbox = self._inbox
        # An ending session (its answers still being written) takes nothing more.
        while self._next < len(inbox) and not session.closed and session.ending is None:
            item = inbox[self._next]
            self._next += 1
            if isinstance(item, ImError):
                # The frames before it are answered first: sends still waiting for storage
                # get their answers, then the refusal, then the close.
                waiting = session.inflight.all_answered() if session.inflight else None
                if waiting is not None:
                    self._next -= 1  # come back to it
                    self._busy = True
                    self._transport.pause_reading()
                    self._gateway.spawn(self._finish(waiting))
                    return
                Dispatcher.refuse(session, item)  # and closes
                break
            pending = receive(session, item)
            if pending is not None:
                self._busy = True
                self._transport.pause_reading()
                self._gateway.spawn(self._finish(pending))
                return
        inbox.clear()
        self._next = 0
        if session.budget is not None and session.budget.cut:
            # Closed for flooding: what it still sends would only be parsed and dropped. (Any
            # other ending reads and drops what comes until the close, which then sends no
            # reset that could destroy the last answers before the client reads them.)
            self._transport.pause_reading()

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        finally:
            self._busy = False
        self._process()
        if not self._busy and not self._write_paused:
            self._resume()

    def _resume(self) -> None:
        budget = self.session.budget
        if (
            not self._transport.is_closing()
            and not (budget is not None and budget.cut)
            and not (self._gateway.draining and not self.session.closed)
        ):
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._writable.pause()
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._writable.resume()
        if not self._busy:
            self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.resume()
        self._gateway.release(self._peer)
        self._gateway.close_session(self.session, TCP)
