"""History pages and sync: reading a conversation from storage by sequence number.

Sync: the client names, per conversation, the last sequence it holds (conversations it does not
name start from the user's read position); the server answers with everything after it, in
order, in pages of at most ``limit`` messages, each saying whether more follows. Live messages
that arrive meanwhile are held for the connection and released after the last page, without
those the pages already carried, so the client gets each message once and in order. The last
page also lists every conversation with its positions, so read changes (own devices, the
other user's receipts) and new conversations are learned too.

Pages are bounded in bytes as well as in messages: a page stops at half the connection's byte
limit (``--max-outbound``; 512 KiB by default), always carrying at least one message, and
``more`` says the rest follows. Storage is read a bounded number of messages at a time
(``read_size``: 64 by default, at most 4 MiB even if each is as large as a frame may be), so no
request makes the server hold more than a few times the limit for one connection, whatever
``limit`` it names.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import Conv, ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.delivery import message
from imhub.service.reads import addressed, conv_list
from imhub.service.sessions import Session
from imhub.storage import reads
from imhub.storage.conversations import MsgRow, messages_before, messages_between

DEFAULT_PAGE = 200
MAX_PAGE = 500
ROW_OVERHEAD = 256  # the fields of a message on the wire besides its body and msgIdClient
# A read from storage takes at most this many times a connection's byte limit, counting every
# message as large as a frame may be. Reads of fewer messages cost more queries: 16 at a time
# (factor 1) took 4 times the server CPU of 500 for a login backlog of small messages.
READ_FACTOR = 4


def read_size(limit: int, max_frame: int) -> int:
    """How many messages to read from storage at once for a connection of byte limit
    ``limit``, when no stored message is larger than ``max_frame``."""
    return max(1, min(MAX_PAGE, READ_FACTOR * limit // max_frame))


def page_size(limit: int | None) -> int:
    return max(1, min(limit or DEFAULT_PAGE, MAX_PAGE))


def wire_size(row: MsgRow) -> int:
    """About how many bytes ``row`` takes in a page (its body's UTF-8, plus the rest)."""
    body = row.body
    size = len(body) if body.isascii() else len(body.encode())
    return size + len(row.msg_id_client) + ROW_OVERHEAD


class _Page:
    """The rows of one answer, bounded in bytes: a row that would pass ``budget`` is not
    taken, unless the page is still empty (a page always carries at least one row)."""

    def __init__(self, budget: int) -> None:
        self.rows: list[MsgRow] = []
        self._size = 0
        self._budget = budget

    def take(self, row: MsgRow) -> bool:
        cost = wire_size(row)
        if self.rows and self._size + cost > self._budget:
            return False
        self.rows.append(row)
        self._size += cost
        return True


@dataclass(slots=True, frozen=True)
class HistoryPage:
    conv: int
    rows: list[MsgRow]  # oldest first
    more: bool  # older messages exist


class HistoryService:
    def __init__(
        self, engine: AsyncEngine, membership: Membership, max_frame: int = 64 * 1024
    ) -> None:
        self._engine = engine
        self._membership = membership
        self._max_frame = max_frame  # the largest message storage can hold

    def _bounds(self, byte_limit: int) -> tuple[int, int]:
        """The most bytes of a page for a connection of ``byte_limit``, and the most messages
        to read from storage at once."""
        return max(1, byte_limit // 2), read_size(byte_limit, self._max_frame)

    async def history(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 14: a page of messages before ``beforeSeq`` (default: the newest)."""
        assert session.user_id is not None
        page = await self.page(session.user_id, msg, session.outlet.limit)
        session.reply(
            addressed(
                ImMsg(
                    msg_type=MsgType.HISTORY,
                    code=ErrorCode.OK,
                    messages=[message(r) for r in page.rows],
                    more=page.more,
                ),
                page.conv,
            )
        )

    async def page(self, user_id: int, msg: ImMsg, byte_limit: int) -> HistoryPage:
        """The messages of ``msg``'s conversation before ``msg.before_seq``, at most
        ``msg.limit`` and about half ``byte_limit`` bytes, for a member or former member
        (``ImError`` otherwise). Also the HTTP API's history."""
        conv, upto = await self._membership.visible(user_id, msg)
        limit = page_size(msg.limit)
        budget, per_read = self._bounds(byte_limit)
        before = msg.before_seq if msg.before_seq is not None else 2**53
        if upto is not None:  # a former member: up to the event that ended it
            before = min(before, upto + 1)
        newest_first = _Page(budget)
        more = False
        async with self._engine.connect() as conn:
            while not more:
                want = min(limit - len(newest_first.rows), per_read)
                rows = await messages_before(conn, conv, before, want + 1)  # one to see past
                older = len(rows) > want
                for row in reversed(rows[-want:]):
                    if not newest_first.take(row):
                        more = True
                        break
                    before = row.seq
                if not older:
                    break
                more = more or len(newest_first.rows) >= limit
        return HistoryPage(conv, newest_first.rows[::-1], more)

    async def sync(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 11: everything after the client's positions, a page at a time."""
        assert session.user_id is not None
        limit = page_size(msg.limit)
        budget, per_read = self._bounds(session.outlet.limit)
        session.hold()
        try:
            async with self._engine.connect() as conn:
                states = await reads.conversations(conn, session.user_id)
                mine = {conv_key(s.chat_id, s.team_id): s for s in states}
                # Conversations the client does not name start from the user's read position.
                wanted = {conv: s.read_seq for conv, s in mine.items()}
                # A named conversation the user may not see is answered for alone: listed as
                # refused, while the rest of the sync goes on.
                refused: list[Conv] = []
                for c in msg.convs or ():
                    conv = conv_key(c.chat_id, c.team_id)
                    if conv not in mine:
                        refused.append(Conv(chat_id=c.chat_id, team_id=c.team_id))
                        continue
                    wanted[conv] = c.seq or 0
                page = _Page(budget)
                more = False
                for conv in sorted(wanted, key=abs):
                    # Nothing before the membership began (a member added again is not sent
                    # what was said while they were out; it is history, not new).
                    start = max(0, mine[conv].join_seq - 1)
                    after, upto = max(wanted[conv], start), mine[conv].last_seq
                    while after < upto and not more:
                        if len(page.rows) >= limit:
                            more = True  # the page is full and this conversation goes on
                            break
                        want = min(limit - len(page.rows), per_read)
                        rows = await messages_between(conn, conv, after, upto, want)
                        for row in rows:
                            if not page.take(row):
                                more = True
                                break
                            after = row.seq
                        if len(rows) < want:
                            break  # nothing more stored in this conversation
                    if more:
                        break
        except BaseException:
            session.release_held()
            raise
        for row in page.rows:
            session.given(row.conv, row.seq)
        session.reply(
            ImMsg(
                msg_type=MsgType.SYNC,
                code=ErrorCode.OK,
                messages=[message(r) for r in page.rows],
                more=more,
                convs=None if more else conv_list(states),
                refused=refused or None,
            )
        )
        if not more:
            session.release_held()
