"""History pages and sync: reading a conversation from storage by sequence number.

Sync: the client names, per conversation, the last sequence it holds (conversations it does not
name start from the user's read position); the server answers with everything after it, in
order, in pages of at most ``limit`` messages, each saying whether more follows. Live messages
that arrive meanwhile are held for the connection and released after the last page, without
those the pages already carried, so the client gets each message once and in order. The last
page also lists every conversation with its positions, so read changes (own devices, the
other user's receipts) and new conversations are learned too.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.delivery import message
from imhub.service.reads import addressed, conv_list
from imhub.service.sessions import Session
from imhub.storage import reads
from imhub.storage.conversations import MsgRow, messages_before, messages_between

DEFAULT_PAGE = 200
MAX_PAGE = 500


def page_size(limit: int | None) -> int:
    return max(1, min(limit or DEFAULT_PAGE, MAX_PAGE))


class HistoryService:
    def __init__(self, engine: AsyncEngine, membership: Membership) -> None:
        self._engine = engine
        self._membership = membership

    async def history(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 14: a page of messages before ``beforeSeq`` (default: the newest)."""
        assert session.user_id is not None
        conv = await self._membership.conv_of(session.user_id, msg)
        limit = page_size(msg.limit)
        before = msg.before_seq if msg.before_seq is not None else 2**53
        async with self._engine.connect() as conn:
            rows = await messages_before(conn, conv, before, limit + 1)
        more = len(rows) > limit
        rows = rows[-limit:]
        session.reply(
            addressed(
                ImMsg(
                    msg_type=MsgType.HISTORY,
                    code=ErrorCode.OK,
                    messages=[message(r) for r in rows],
                    more=more,
                ),
                conv,
            )
        )

    async def sync(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 11: everything after the client's positions, a page at a time."""
        assert session.user_id is not None
        limit = page_size(msg.limit)
        session.hold()
        try:
            async with self._engine.connect() as conn:
                states = await reads.conversations(conn, session.user_id)
                mine = {conv_key(s.chat_id, s.team_id): s for s in states}
                # Conversations the client does not name start from the user's read position.
                wanted = {conv: s.read_seq for conv, s in mine.items()}
                for c in msg.convs or ():
                    conv = conv_key(c.chat_id, c.team_id)
                    if conv not in mine:
                        raise ImError(ErrorCode.NOT_FOUND, f"not a conversation of yours: {c}")
                    wanted[conv] = c.seq or 0
                page: list[MsgRow] = []
                more = False
                for conv in sorted(wanted, key=abs):
                    after, upto = wanted[conv], mine[conv].last_seq
                    if after >= upto:
                        continue
                    room = limit - len(page)
                    rows = await messages_between(conn, conv, after, upto, room + 1)
                    if len(rows) > room:
                        rows, more = rows[:room], True
                    page.extend(rows)
                    if more:
                        break
        except BaseException:
            session.release_held()
            raise
        for row in page:
            session.given(row.conv, row.seq)
        session.reply(
            ImMsg(
                msg_type=MsgType.SYNC,
                code=ErrorCode.OK,
                messages=[message(r) for r in page],
                more=more,
                convs=None if more else conv_list(states),
            )
        )
        if not more:
            session.release_held()
