"""Filling a connection's gaps from storage, in a cluster.

A connection's floor per conversation says what it was given. When a live copy arrives with
a seq past the next one (another node's message was overtaken by this node's, or its news was
lost with a Redis outage), the session keeps it aside (``Session.ahead``) and asks here: the
missing range is read from storage and written in order, then what waited follows. After the
bus comes back, every local connection is compared with the conversations' newest seqs and
caught up the same way. The database is the source of truth; the bus only makes it fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol import codec
from imhub.protocol.conversation import conv_key
from imhub.protocol.messages import MsgType
from imhub.service.delivery import message
from imhub.service.history import read_size
from imhub.service.sessions import Session
from imhub.storage.catchup import deleted_among, last_seqs, member_spans
from imhub.storage.conversations import CHAT_MSG, MsgRow, messages_between
from imhub.storage.reads import ConvState, conversations_of

log = logging.getLogger(__name__)


def form(session: Session, row: MsgRow) -> bytes:
    """A stored row as this connection gets it live: ``chat`` where the conversation is shown,
    ``notice`` elsewhere; events as themselves."""
    if row.msg_type != CHAT_MSG:
        return codec.encode(message(row))
    shown = row.conv in session.entered
    return codec.encode(message(row, MsgType.CHAT if shown else MsgType.NOTICE))


class GapFiller:
    def __init__(
        self,
        engine: AsyncEngine,
        read_at_once: Callable[[MsgRow, Iterable[int]], None],
        max_frame: int,
    ) -> None:
        self._engine = engine
        self._max_frame = max_frame  # the largest message: how many rows to read at once
        self._read_at_once = read_at_once  # the chat/notice rule for what a fill writes
        self._running: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._wanted: dict[tuple[int, int], int] = {}  # how far ``upto`` asked a fill to go
        self.fills = 0  # gaps filled from storage, for /metrics

    def gap(self, session: Session, conv: int) -> None:
        """``Session.on_gap``: fill ``conv`` for ``session`` (once at a time)."""
        self._start(session, conv)

    def _start(self, session: Session, conv: int) -> tuple[int, int]:
        """The fill of ``conv`` for ``session``, begun unless one runs: its key."""
        key = (id(session), conv)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._fill(session, conv, key))
        return key

    def upto(self, session: Session, conv: int, last_seq: int) -> None:
        """Make sure ``session`` has ``conv`` up to ``last_seq`` (a catch-up, a message too
        large for the bus); a fill already running goes on that far."""
        if last_seq <= session.floor.get(conv, 0) or session.closed:
            return
        key = self._start(session, conv)  # a task: it first runs after this has been set
        self._wanted[key] = max(last_seq, self._wanted.get(key, 0))

    async def _fill(self, session: Session, conv: int, key: tuple[int, int]) -> None:
        try:
            while not session.closed:
                floor = session.floor.get(conv, 0)
                target = session.gap(conv)
                wanted = self._wanted.pop(key, None)
                if wanted is not None:
                    target = max(target or 0, wanted)
                if target is None:
                    return
                if target > floor:
                    self.fills += 1
                    await self._write(session, conv, floor, target)
                if session.held is not None:
                    # What was read waits in ``held`` with the rest; raising the floor now
                    # would drop it. Whatever still lacks after the release asks again.
                    return
                session.skip_to(conv, target)
        except Exception:
            log.exception("filling a gap from storage failed; the client's sync will")
        finally:
            self._running.pop(key, None)
            if session.closed:
                self._wanted.pop(key, None)

    async def _write(self, session: Session, conv: int, floor: int, target: int) -> None:
        spans = [(floor + 1, 0)]  # a one-to-one chat: all of it
        if conv < 0 and session.user_id is not None:
            waiting = list(session.ahead.get(conv, ())) if session.ahead is not None else []
            async with self._engine.connect() as conn:
                spans = await member_spans(conn, -conv, session.user_id, floor)
            # Copies waiting outside every membership (a node that had not yet heard of a
            # removal delivered them) are not theirs: out before anything is written, or
            # writing the end of one membership would release them. They were committed
            # before this read, so any membership they belong to is in it.
            session.discard(conv, [s for s in waiting if not _inside(spans, s)])
        after = floor
        for join_seq, leave_seq in spans:
            if join_seq > target or session.closed:
                break
            if join_seq - 1 > after and session.held is None:
                # Nothing between the floor (or the end of the membership before) and
                # this join is theirs: the floor passes it first, or the rows written
                # below would wait behind that range, and the final ``skip_to`` would
                # drop them unsent (the add event of a member re-added while their own
                # post overtook it).
                session.skip_to(conv, join_seq - 1)
            after = max(after, join_seq - 1)
            upto = min(target, leave_seq) if leave_seq else target
            await self._rows(session, conv, (after, upto), spans)
            after = max(after, upto)
        if any(leave_seq for _, leave_seq in spans):
            await self._past_membership(session, conv)

    async def _rows(
        self,
        session: Session,
        conv: int,
        between: tuple[int, int],
        spans: list[tuple[int, int]],
    ) -> None:
        """Write the stored rows of ``conv`` in (after, upto], in order, as fast as the
        connection takes them (a login backlog's pace: a fill after an outage, or of large
        messages, must not make its reader a slow consumer), a read's worth of rows at a time
        with no database connection held while it waits. Copies that came meanwhile between
        two of ``spans`` are not theirs: out before the rows release them."""
        after, upto = between
        per_read = read_size(session.outlet.limit, self._max_frame)
        while after < upto and not session.closed:
            async with self._engine.connect() as conn:
                rows = await messages_between(conn, conv, after, upto, per_read)
            if not rows:
                break
            self._outside(session, conv, spans)
            for row in rows:
                own = session.ahead.get(conv, {}) if session.ahead is not None else {}
                if own.get(row.seq, b"") is not None:  # None: this connection sent it
                    session.deliver(conv, row.seq, form(session, row))
                    taken = session.outlet.drained()
                    if taken is not None:
                        await taken
                        if session.closed:
                            return
                        self._outside(session, conv, spans)
            if session.user_id is not None and conv in session.entered:
                self._read_at_once(rows[-1], (session.user_id,))
            after = rows[-1].seq

    @staticmethod
    def _outside(session: Session, conv: int, spans: list[tuple[int, int]]) -> None:
        """Drop the copies waiting between two of ``spans`` (not the member's)."""
        own = session.ahead.get(conv, {}) if session.ahead is not None else {}
        if own and len(spans) > 1:
            session.discard(conv, [s for s in own if _between(spans, s)])

    async def _past_membership(self, session: Session, conv: int) -> None:
        """A membership ended past the floor: live copies waiting outside every membership
        (a node that had not yet heard of the removal delivered them) are not theirs. Read
        again, afresh, so that a membership begun since counts; judged are the copies that
        waited before the read (committed before it), and read again only while copies
        that came during a read lie outside what it found."""
        assert session.user_id is not None
        judged: set[int] = set()
        spans: list[tuple[int, int]] | None = None
        while True:
            waiting = set(session.ahead.get(conv, ())) if session.ahead is not None else set()
            fresh = waiting - judged
            if not fresh or (spans is not None and all(_inside(spans, s) for s in fresh)):
                return
            async with self._engine.connect() as conn:
                floor = session.floor.get(conv, 0)
                spans = await member_spans(conn, -conv, session.user_id, floor)
            session.discard(conv, [s for s in waiting if not _inside(spans, s)])
            judged |= waiting

    async def survey(self, users: list[int]) -> tuple[set[int], dict[int, list[ConvState]]]:
        """After a gap in the bus: which of ``users`` are deleted, and every conversation of
        the others as storage holds it now."""
        async with self._engine.connect() as conn:
            deleted = await deleted_among(conn, users)
            convs = await conversations_of(conn, [u for u in users if u not in deleted])
        return deleted, convs

    def catch_up(self, sessions: Iterable[Session], convs: list[ConvState]) -> None:
        """Bring each of one user's ``sessions`` up to ``convs`` (``survey``)."""
        for state in convs:
            conv = conv_key(state.chat_id, state.team_id)
            for s in sessions:
                self.upto(s, conv, state.last_seq)

    async def newest(self, convs: Iterable[int]) -> dict[int, int]:
        async with self._engine.connect() as conn:
            return await last_seqs(conn, list(convs))


def _inside(spans: list[tuple[int, int]], seq: int) -> bool:
    """``seq`` lies in one of the memberships (both of its events included)."""
    return any(join <= seq and (not leave or seq <= leave) for join, leave in spans)


def _between(spans: list[tuple[int, int]], seq: int) -> bool:
    """``seq`` lies between two memberships (a later one began after it): never theirs."""
    return not _inside(spans, seq) and any(join > seq for join, _ in spans)
