"""Writing to a connection: frames queued during a loop tick are written with one call.

Flushing once per tick instead of once per message nearly doubles what a Python server can
relay (see docs/performance.md). Memory per connection stays bounded in bytes: what is queued
for a connection (this tick's frames and the transport's buffer) never passes ``max_outbound``;
a connection that gets there is a slow consumer and is dropped (its messages stay stored and
reach it by sync or at its next login). What the server reads from storage for a connection
(login backlog) waits on ``drained()`` instead, so a slow reader slows the reading down rather
than being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from imhub.metrics import Metrics

# Shutting down, a connection is closed once its peer has sent nothing for this long after it
# was told (nginx's lingering_timeout): by then what the peer sent before it read the notice
# has arrived and been dropped, so closing sends no reset.
LINGER_QUIET = 0.5


def _cut(transport: asyncio.Transport) -> None:
    """Reset a connection whose peer does not take what it is sent: what is queued is thrown
    away, in the kernel too (SO_LINGER 0 sends a reset; a plain close would leave the kernel
    retrying megabytes to the peer for minutes). Nothing, if it is closed already."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Writable:
    """Flow control of one transport, fed by its protocol's ``pause_writing`` and
    ``resume_writing`` (and ``connection_lost``). ``await writable()`` ends when writing may
    go on: the object is the outlet's ``drain`` itself, so no bound method is kept per
    connection."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __call__(self) -> None:
        if self._waiter is not None:
            await asyncio.shield(self._waiter)


# The last payload sent, its framing function, msgType and header: a group's message goes to
# every member's connection in a row, and its header and type are worked out once.
_last: list[Any] = [None, None, 0, b""]


class FrameOutlet:
    """Implements ``service.sessions.Outlet`` over a transport, with a framing header."""

    __slots__ = (
        "_buffered",
        "_close_grace",
        "_closed",
        "_closer",
        "_header",
        "_loop",
        "_max_outbound",
        "_pending",
        "_queued",
        "_stats",
        "_transport",
        "closing",
        "drain",
        "dropped",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        header: Callable[[int], bytes],
        max_outbound: int,
        closer: Callable[[], None],
        stats: Metrics,
        close_grace: float = 5.0,
    ) -> None:
        self._transport = transport
        self._stats = stats
        # A graceful close waits for the peer to take what is queued; one that never reads
        # would keep the socket (and its buffer) for ever, so after this many seconds it is
        # cut (``close``).
        self._close_grace = close_grace
        self._header = header
        self._max_outbound = max_outbound
        if transport.get_write_buffer_limits()[1] > max_outbound // 2:
            # The transport must pause (and ``drain`` wait) before half the limit is queued,
            # or a producer waiting on ``drained()`` could still pass the limit.
            transport.set_write_buffer_limits(high=max(1, max_outbound // 2))
        self._closer = closer  # the transport's own graceful close
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._queued = 0  # bytes in _pending
        # The transport's buffer at the last flush: it only shrinks until the next one, so
        # _queued + _buffered bounds what is queued without asking the transport each time.
        self._buffered = 0
        self._closed: asyncio.Future[None] | None = None  # made when a producer waits
        self.closing = False
        self.dropped = False  # cut for not reading (a slow consumer)
        # Ends when the transport takes writes again after pausing them; set by the
        # connection that owns the transport (its protocol gets the flow-control calls).
        self.drain: Callable[[], Awaitable[None]] | None = None

    @property
    def limit(self) -> int:
        return self._max_outbound

    @property
    def peername(self) -> object:
        """The transport's ``peername`` (None once a TLS transport is closed)."""
        return self._transport.get_extra_info("peername")

    @property
    def peer(self) -> str:
        name = self._transport.get_extra_info("peername")
        return f"{name[0]}:{name[1]}" if name else "?"

    def send(self, payload: bytes) -> None:
        if self.closing:
            return
        memo = _last
        if payload is memo[0] and self._header is memo[1]:  # the next member of a fan-out
            t, header = memo[2], memo[3]
        else:
            # Counted by msgType, read from the payload: every one is an encoded ``ImMsg``,
            # which starts with b'{"msgType":' and one or two digits.
            t = payload[11] - 48
            d = payload[12] - 48
            if 0 <= d <= 9:
                t = t * 10 + d
            header = self._header(len(payload))
            memo[:] = payload, self._header, t, header
        self._stats.msgs_out[t] += 1
        if t == 8:
            self._stats.error_frame(payload)
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(header)
        self._pending.append(payload)
        self._queued += len(header) + len(payload)
        if self._queued + self._buffered > self._max_outbound:
            self._buffered = self._transport.get_write_buffer_size()
            if self._queued + self._buffered > self._max_outbound:
                self._drop()

    def queued(self) -> int:
        return self._queued + self._transport.get_write_buffer_size()

    def flush(self) -> None:
        if not self._pending:
            return
        transport = self._transport
        if transport.is_closing():
            self._pending.clear()
            self._queued = 0
            return
        transport.writelines(self._pending)
        self._pending.clear()
        self._queued = 0
        self._buffered = transport.get_write_buffer_size()
        if self._buffered > self._max_outbound:
            self._drop()

    def drained(self) -> Awaitable[None] | None:
        if self.closing or self.queued() <= self._max_outbound // 2:
            return None
        self.flush()
        if self.closing or self.drain is None:
            return None
        return self._until_drained(self.drain)

    async def _until_drained(self, drain: Callable[[], Awaitable[None]]) -> None:
        if self._closed is None:
            self._closed = self._loop.create_future()
        draining = asyncio.ensure_future(drain())
        draining.add_done_callback(_quietly)  # a lost connection ends it with an error
        await asyncio.wait((draining, self._closed), return_when=asyncio.FIRST_COMPLETED)

    def _drop(self) -> None:
        self.dropped = True  # the gateway logs it when the connection is gone
        self._pending.clear()
        self._queued = 0
        self._ended()
        _cut(self._transport)

    def close(self) -> None:
        if self.closing:
            return
        self.flush()
        if not self.closing:
            self._ended()
            self._closer()
            if self._transport.get_write_buffer_size():
                self._loop.call_later(self._close_grace, _cut, self._transport)

    def pause_reading(self) -> None:
        """Read nothing more from the peer (a server shutting down)."""
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def abort(self) -> None:
        """Cut the connection at once, whatever is queued."""
        self._ended()
        _cut(self._transport)

    def _ended(self) -> None:
        self.closing = True
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)


def _quietly(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
