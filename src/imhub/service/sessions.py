"""Sessions: one per connection, whatever its transport, and the registry of who is online.

A user may be online on several connections at once (phone, PC, browser); the registry maps
each user to all of them. The gateway creates a session per connection and removes it when
the connection closes. Services write through the session (``deliver`` for numbered messages,
``send`` for the rest, ``reply``/``error`` for answers, ``push`` for what storage gives), never
to the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import ImMsg
from imhub.service.limits import ConnBudget

NOTHING_ENTERED: frozenset[int] = frozenset()


END_WITHIN = 10.0  # s: how long an ended session waits for the answers to its sends
CATCHING_UP = "too much arrived while catching up: sync again"  # why a slow one is dropped


class Outlet(Protocol):
    """The transport side of a session, implemented by the gateway for TCP and WebSocket."""

    @property
    def limit(self) -> int:
        """The most bytes the server keeps for this connection (``--max-outbound``)."""

    def send(self, payload: bytes) -> None:
        """Queue one encoded JSON message; framing is the outlet's business."""

    def queued(self) -> int:
        """Bytes written to this connection that the peer has not taken yet."""

    def drained(self) -> Awaitable[None] | None:
        """None while little is queued; else an awaitable that ends when the peer has taken
        most of it, or the connection is gone. Producers that read from storage wait on it."""

    def close(self) -> None:
        """Flush what is queued, then close."""

    @property
    def peer(self) -> str:
        """The remote address, for log lines ("host:port")."""


class InFlight:
    """A connection's sends queued for storage but not answered yet. Past ``limit`` the
    connection is read no further until half of them are answered, so one client cannot queue
    writes without bound (the gateway stops reading while a handler's awaitable is pending)."""

    __slots__ = ("count", "drained", "limit", "settled")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.drained: asyncio.Event | None = None
        self.settled: asyncio.Event | None = None  # waited on until every send is answered

    def add(self) -> Coroutine[Any, Any, None] | None:
        """Count one more; past the limit, an awaitable that ends when enough are answered."""
        self.count += 1
        if self.count < self.limit:
            return None
        self.drained = asyncio.Event()
        return self._wait(self.drained)

    @staticmethod
    async def _wait(drained: asyncio.Event) -> None:
        await drained.wait()

    def done(self) -> None:
        self.count -= 1
        if self.drained is not None and self.count <= self.limit // 2:
            self.drained.set()
            self.drained = None
        if self.settled is not None and self.count == 0:
            self.settled.set()
            self.settled = None

    def all_answered(self) -> Coroutine[Any, Any, None] | None:
        """None when nothing is in flight; else an awaitable that ends when every send so
        far has its answer (or refusal) written."""
        if self.count == 0:
            return None
        if self.settled is None:
            self.settled = asyncio.Event()
        return self._wait(self.settled)


class Session:
    __slots__ = (
        "ahead",
        "budget",
        "client_type",
        "closed",
        "conn_id",
        "counted",
        "ended",
        "ending",
        "entered",
        "expires",
        "floor",
        "held",
        "held_bytes",
        "inflight",
        "last_seen",
        "on_gap",
        "opened",
        "outlet",
        "request_id",
        "user_id",
    )

    def __init__(self, outlet: Outlet, now: float, conn_id: int = 0) -> None:
        self.outlet = outlet
        self.conn_id = conn_id  # names the connection in log lines
        # Why the server ended the session (code, reason), for the log line of its close.
        self.ended: tuple[int, str] | None = None
        self.user_id: int | None = None
        self.client_type = 0
        # Conversations this connection shows (chat_enter); most never enter one, so they
        # share one empty set instead of holding their own.
        self.entered: frozenset[int] | set[int] = NOTHING_ENTERED
        self.opened = now
        self.last_seen = now
        self.closed = False
        # The highest sequence of each conversation this connection was given or will be given
        # from storage (login backlog, sync pages): live copies at or below it are not sent.
        self.floor: dict[int, int] = {}
        # While storage is being read for this connection (login backlog, sync), live
        # messages wait here as (conversation, seq, payload) to keep order and skip repeats.
        self.held: list[tuple[int, int, bytes | None]] | None = None
        self.held_bytes = 0
        # When the login token expires (epoch seconds, as its ``exp``): the gateway's sweep
        # ends the session then. One sweep for all, not a timer per connection.
        self.expires: float | None = None
        # The msgIdClient of the request being handled, echoed on its answer and errors.
        self.request_id: str | None = None
        self.inflight: InFlight | None = None  # sends not yet answered, made on first send
        self.ending: asyncio.Task[None] | None = None  # ended, waiting for its answers
        # In a cluster only (None on one process, which behaves as before): messages of a
        # conversation that came before the one after the floor (another node's message was
        # overtaken, or lost), by conversation and seq; and whom to ask to fill the gap from
        # storage (``service.crossnode``). A None payload is a message this connection sent
        # itself: it gets no copy, but the floor passes it.
        self.ahead: dict[int, dict[int, bytes | None]] | None = None
        self.on_gap: Callable[[Session, int], None] | None = None
        # Its message rate limit (``service.limits``), made with its first message.
        self.budget: ConnBudget | None = None
        # The user it counts as a connection of (``Limits.join_user``), until it closes.
        self.counted: int | None = None

    def deliver(self, conv: int, seq: int, payload: bytes | None) -> None:
        """Write a live message of a conversation, once, in sequence order (``payload`` None:
        in a cluster, a message of this connection's own, which the floor passes)."""
        if self.closed:
            return
        if self.held is not None:
            self._hold(conv, seq, payload)
            return
        floors = self.floor
        floor = floors.get(conv, 0)
        if seq <= floor:
            return
        if self.on_gap is not None and seq > floor + 1:
            if self.ahead is None:
                self.ahead = {}
            self.ahead.setdefault(conv, {})[seq] = payload
            self.on_gap(self, conv)
            return
        floors[conv] = seq
        if payload is not None:
            self.outlet.send(payload)
        if self.ahead is not None and conv in self.ahead:
            self._drain(conv)

    def skip_to(self, conv: int, seq: int) -> None:
        """Storage holds nothing more for this connection up to ``seq`` (a gap filled): what
        waited behind it follows."""
        if seq > self.floor.get(conv, 0):
            self.floor[conv] = seq
        if self.ahead is not None and conv in self.ahead:
            self._drain(conv)

    def _drain(self, conv: int) -> None:
        assert self.ahead is not None
        waiting = self.ahead[conv]
        floor = self.floor.get(conv, 0)
        for seq in sorted(waiting):
            if seq <= floor:
                del waiting[seq]
            elif seq == floor + 1:
                payload = waiting.pop(seq)
                floor = seq
                if payload is not None and not self.closed:
                    self.outlet.send(payload)
            else:
                break
        self.floor[conv] = floor
        if not waiting:
            del self.ahead[conv]

    def discard(self, conv: int, seqs: Iterable[int]) -> None:
        """Messages waiting behind a gap that are not this connection's to see (a group it
        had left when they were stored): they never go out."""
        waiting = self.ahead.get(conv) if self.ahead is not None else None
        if waiting is None:
            return
        for seq in seqs:
            waiting.pop(seq, None)
        if not waiting:
            assert self.ahead is not None
            del self.ahead[conv]

    def gap(self, conv: int) -> int | None:
        """The seq just before the first message waiting behind a gap, or None: no gap."""
        waiting = self.ahead.get(conv) if self.ahead is not None else None
        return min(waiting) - 1 if waiting else None

    def send(self, payload: bytes) -> None:
        """Write a live message that belongs to no conversation (a notice, a read receipt)."""
        if self.closed:
            return
        if self.held is not None:
            self._hold(0, 0, payload)
        else:
            self.outlet.send(payload)

    def _hold(self, conv: int, seq: int, payload: bytes | None) -> None:
        assert self.held is not None
        self.held.append((conv, seq, payload))
        self.held_bytes += len(payload) if payload is not None else 0
        if self.held_bytes + self.outlet.queued() > self.outlet.limit:
            # Live traffic outran what storage is giving this connection (or the client never
            # asked for the next sync page): drop it rather than keep more than the limit;
            # everything is stored, and the client catches up by sync. (The gateway logs the
            # close, with the reason.)
            self.end(ErrorCode.SLOW_CONSUMER, CATCHING_UP, answer_first=False)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    def release_held(self) -> None:
        held, self.held = self.held, None
        self.held_bytes = 0
        for conv, seq, payload in held or ():
            if conv:
                self.deliver(conv, seq, payload)
            elif payload is not None:
                self.send(payload)

    def given(self, conv: int, seq: int) -> None:
        """Record that storage gave this connection ``seq`` of ``conv`` (login, sync pages).

        Not for what the connection sent itself: it gets no live copy of that anyway, and
        raising the floor for it while live messages are held would drop the held ones with
        lower numbers."""
        if seq > self.floor.get(conv, 0):
            self.floor[conv] = seq

    def reply(self, msg: ImMsg | bytes) -> None:
        """Send an answer to this connection's own request, ahead of held live messages; it
        carries the request's ``msgIdClient`` unless it names one of its own."""
        if self.closed:
            return
        if isinstance(msg, ImMsg):
            if msg.msg_id_client is None:
                msg.msg_id_client = self.request_id
            msg = codec.encode(msg)
        self.outlet.send(msg)

    def push(self, msg: ImMsg) -> None:
        """Write a message from storage (a login backlog item), ahead of held live messages."""
        if not self.closed:
            self.outlet.send(codec.encode(msg))

    def error(self, code: ErrorCode, reason: str, msg_id_client: str | None = None) -> None:
        self.reply(codec.error_msg(code, reason, msg_id_client))

    def end(self, code: ErrorCode, reason: str, answer_first: bool = True) -> None:
        """Tell the client why the server ends the session, then close; sends already
        taken get their answers first (within ``END_WITHIN``), or a client whose message was
        stored would never learn it (``answer_first`` False: a connection dropped for taking
        too little gets nothing more; its client syncs and resends). The error answers no
        request, so it carries no ``msgIdClient``, whatever is being handled."""
        if self.closed or self.ending is not None:
            return
        inflight = self.inflight if answer_first else None
        waiting = inflight.all_answered() if inflight is not None else None
        if waiting is None:
            self._end_now(code, reason)
        else:
            self.ending = asyncio.ensure_future(self._end_after(waiting, code, reason))

    async def _end_after(
        self, answered: Coroutine[Any, Any, None], code: ErrorCode, reason: str
    ) -> None:
        try:
            async with asyncio.timeout(END_WITHIN):
                await answered
        except TimeoutError:
            pass
        self._end_now(code, reason)

    def _end_now(self, code: ErrorCode, reason: str) -> None:
        if not self.closed:
            self.ended = (code, reason)
            self.outlet.send(codec.encode(codec.error_msg(code, reason)))
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outlet.close()
        self.gone()

    def gone(self) -> None:
        """The connection is closed (by either side): let go of what is kept for it."""
        self.closed = True
        self.held = None
        self.held_bytes = 0
        self.ahead = None


def log_fields(session: Session) -> dict[str, Any]:
    """What names a connection in a log line: ``extra=log_fields(session)``."""
    return {"conn": session.conn_id, "user": session.user_id, "remote": session.outlet.peer}


class SessionRegistry:
    """Who is online, on which connections, and which conversations those connections show.

    ``viewers`` indexes, per conversation, the users with a connection showing it, so that
    storing a message in a group of thousands looks only at those, not at every member."""

    def __init__(self) -> None:
        self._by_user: dict[int, list[Session]] = {}
        self._viewers: dict[int, dict[int, int]] = {}  # conv -> user -> connections showing it
        # Told when a connection enters or quits a conversation (a cluster's presence).
        self.on_change: Callable[[Session], None] | None = None

    def add(self, session: Session) -> None:
        assert session.user_id is not None
        self._by_user.setdefault(session.user_id, []).append(session)

    def remove(self, session: Session) -> None:
        if session.user_id is None:
            return
        sessions = self._by_user.get(session.user_id)
        if sessions and session in sessions:
            sessions.remove(session)
            if not sessions:
                del self._by_user[session.user_id]
            for conv in list(session.entered):
                self.quit(session, conv)

    def enter(self, session: Session, conv: int) -> None:
        """The connection shows ``conv`` (chat_enter)."""
        if session.closed or session.user_id is None or conv in session.entered:
            return
        if not isinstance(session.entered, set):
            session.entered = set()
        session.entered.add(conv)
        users = self._viewers.setdefault(conv, {})
        users[session.user_id] = users.get(session.user_id, 0) + 1
        if self.on_change is not None:
            self.on_change(session)

    def quit(self, session: Session, conv: int) -> None:
        """The connection no longer shows ``conv`` (chat_quit, or it closed)."""
        if session.user_id is None or conv not in session.entered:
            return
        assert isinstance(session.entered, set)
        session.entered.discard(conv)
        users = self._viewers[conv]
        users[session.user_id] -= 1
        if not users[session.user_id]:
            del users[session.user_id]
            if not users:
                del self._viewers[conv]
        if self.on_change is not None and not session.closed:
            self.on_change(session)

    def sessions_of(self, user_id: int) -> list[Session]:
        return self._by_user.get(user_id, [])

    @property
    def by_user(self) -> Mapping[int, list[Session]]:
        """User id -> that user's connections (users with none are absent): for loops over
        many users, which look each up without a call per user."""
        return self._by_user

    def online(self, user_id: int) -> bool:
        return user_id in self._by_user

    def user_ids(self) -> Collection[int]:
        """Users with at least one registered connection (some may be closing)."""
        return self._by_user.keys()

    def viewers(self, conv: int) -> Collection[int]:
        """Users with a connection showing ``conv``."""
        return self._viewers.get(conv, {}).keys()
