"""Read positions: moving them, unread counts derived from them, and who has read what.

Unread = the messages (``msg_type`` chat, not recalled, not one's own) with a sequence above
one's read position, counted in one query per kind of conversation. Nothing is counted up or
down per message, so the counts cannot drift.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, bindparam, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.errors import ImError
from imhub.storage.bulk import Script
from imhub.storage.conversations import (
    CHAT_MSG,
    PERSON,
    SYSTEM_USER,
    TEAM,
    Sequences,
    advance_reads,
    chat_t,
    in_conv,
    msg_table,
    person_t,
    team_msg_t,
    team_t,
)

if TYPE_CHECKING:
    from imhub.storage.locks import Rows


@dataclass(slots=True, frozen=True)
class ConvState:
    """One conversation of a user, with positions and the unread count."""

    chat_id: int  # 0 for a group
    team_id: int  # 0 for a one-to-one chat
    peer_user_id: int  # one-to-one only
    team_name: str  # group only
    last_seq: int
    read_seq: int  # the user's own read position
    peer_read_seq: int  # one-to-one only: how far the other user has read
    unread: int
    # A group the user is no longer a member of (removed, left, dissolved): ``last_seq`` is
    # the event that ended the membership, the last message they may see.
    left: bool = False
    # A group: the event that began the (last) membership; nothing before it is new to them.
    join_seq: int = 0


def _person_side(me: Any, peer: Any, my_read: Any, peer_read: Any) -> Select[Any]:
    """The one-to-one chats of the users in ``:users`` on one side of the pair row (the
    smaller id is ``from_user_id``), with unread counts."""
    c, m = chat_t, person_t
    unread = func.count(m.c.person_msg_id)
    return (
        select(me, c.c.chat_id, peer, c.c.last_seq, my_read, peer_read, unread)
        .select_from(
            c.outerjoin(
                m,
                and_(
                    m.c.chat_id == c.c.chat_id,
                    m.c.seq > my_read,
                    # To me, or from the system (to both: ``storage.system``).
                    or_(m.c.to_user_id == me, m.c.from_user_id == SYSTEM_USER),
                    m.c.msg_type == CHAT_MSG,
                    m.c.cancel_flag == False,  # noqa: E712 - SQL expression
                ),
            )
        )
        .where(c.c.event_type == PERSON, me.in_(bindparam("users", expanding=True)))
        .group_by(me, c.c.chat_id, peer, c.c.last_seq, my_read, peer_read)
    )


def _teams_of_users() -> Select[Any]:
    """The groups of the users in ``:users``: those they are in, and those they left (or were
    removed from, or that were dissolved) with everything up to that event."""
    c, t, tm = chat_t, team_t, team_msg_t
    upto = case((c.c.delete_flag == True, c.c.leave_seq), else_=t.c.last_seq)  # noqa: E712
    return (
        select(
            c.c.to_user_id,
            t.c.team_id,
            t.c.team_name,
            upto,
            c.c.to_read_seq,
            func.count(tm.c.team_msg_id),
            c.c.delete_flag,
            c.c.join_seq,
        )
        .select_from(
            c.join(t, t.c.team_id == c.c.team_id).outerjoin(
                tm,
                and_(
                    tm.c.team_id == c.c.team_id,
                    tm.c.seq > c.c.to_read_seq,
                    tm.c.seq <= upto,
                    tm.c.from_user_id != c.c.to_user_id,
                    tm.c.msg_type == CHAT_MSG,
                    tm.c.cancel_flag == False,  # noqa: E712
                ),
            )
        )
        .where(
            c.c.event_type == TEAM,
            c.c.to_user_id.in_(bindparam("users", expanding=True)),
            or_(
                and_(c.c.delete_flag == False, t.c.delete_flag == False),  # noqa: E712
                c.c.leave_seq > 0,
            ),
        )
        .group_by(
            c.c.to_user_id,
            t.c.team_id,
            t.c.team_name,
            t.c.last_seq,
            c.c.to_read_seq,
            c.c.delete_flag,
            c.c.leave_seq,
            c.c.join_seq,
        )
        .order_by(t.c.team_id)
    )


# Built once: building these per login cost more than running them.
_c = chat_t.c
_PERSON_FROM = _person_side(_c.from_user_id, _c.to_user_id, _c.from_read_seq, _c.to_read_seq)
_PERSON_TO = _person_side(_c.to_user_id, _c.from_user_id, _c.to_read_seq, _c.from_read_seq)
_TEAMS = _teams_of_users()


async def conversations_of(
    conn: AsyncConnection, user_ids: Collection[int]
) -> dict[int, list[ConvState]]:
    """Every conversation (chats with a message, groups they are in) of each of ``user_ids``,
    one-to-one chats first, each kind in id order: three queries however many users."""
    found: dict[int, list[ConvState]] = {u: [] for u in user_ids}
    if not found:
        return found
    users = {"users": sorted(found)}
    for stmt in (_PERSON_FROM, _PERSON_TO):
        for me, chat_id, peer_id, last, read, peer_seq, n in await conn.execute(stmt, users):
            found[me].append(ConvState(chat_id, 0, peer_id, "", last, read, peer_seq, n))
    for states in found.values():
        states.sort(key=lambda state: state.chat_id)
    for me, team_id, name, last, read, n, left, join in await conn.execute(_TEAMS, users):
        found[me].append(ConvState(0, team_id, 0, name, last, read, 0, n, bool(left), join))
    return found


async def conversations(conn: AsyncConnection, user_id: int) -> list[ConvState]:
    """Every conversation of one user (see ``conversations_of``)."""
    return (await conversations_of(conn, (user_id,)))[user_id]


async def readers(conn: AsyncConnection, conv: int, seq: int, sender: int) -> list[int]:
    """Who, other than the sender, has read message ``seq`` of a conversation."""
    if conv < 0:
        rows = await conn.execute(
            select(chat_t.c.to_user_id)
            .where(
                chat_t.c.team_id == -conv,
                chat_t.c.event_type == TEAM,
                # Members when it was stored, who have read it (since left, or not).
                chat_t.c.join_seq <= seq,
                or_(chat_t.c.delete_flag == False, chat_t.c.leave_seq >= seq),  # noqa: E712
                chat_t.c.to_read_seq >= seq,
                chat_t.c.to_user_id != sender,
            )
            .order_by(chat_t.c.to_user_id)
        )
        return [int(u) for u in rows.scalars()]
    row = (
        await conn.execute(
            select(
                chat_t.c.from_user_id,
                chat_t.c.to_user_id,
                chat_t.c.from_read_seq,
                chat_t.c.to_read_seq,
            ).where(chat_t.c.chat_id == conv)
        )
    ).first()
    if row is None:
        return []
    a, b, a_read, b_read = row
    return [u for u, read in ((a, a_read), (b, b_read)) if u != sender and read >= seq]


@dataclass(slots=True, frozen=True)
class ReadIn:
    user_id: int
    conv: int
    seq: int | None  # None: everything so far
    upto: int | None = None  # a former member's last visible seq: positions stop there
    # ``seq`` is a stored row's (a cluster node read it at once): no newer bound to look up,
    # and this node's cache of the newest may not have heard of it yet.
    stored: bool = False


class MoveReads:
    """Writer kind: "read up to" (chat_enter reads everything). Positions never go back, and
    never past the conversation's newest message. The result is (position before, position
    after): a read that moved nothing announces nothing."""

    def __init__(self, sequences: Sequences) -> None:
        self._seqs = sequences

    def rows(self, items: Sequence[ReadIn], into: Rows) -> None:
        """Shared databases: the conversation's row; a group's holds its member rows."""
        into.convs.update(item.conv for item in items)

    async def run(
        self, conn: AsyncConnection, items: Sequence[ReadIn]
    ) -> list[tuple[int, int] | ImError]:
        moves = []
        await self._seqs.load(conn, {item.conv for item in items})  # shared: locked already
        before = [await read_position(conn, item.user_id, item.conv) for item in items]
        for item in items:
            if item.stored and item.seq is not None:
                moves.append((item.user_id, item.conv, item.seq))
                continue
            last = await self._seqs.last(conn, item.conv)
            if item.upto is not None:
                last = min(last, item.upto)
            moves.append(
                (item.user_id, item.conv, last if item.seq is None else min(item.seq, last))
            )
        script = Script(conn.dialect)
        advance_reads(script, moves)
        await script.run(conn)
        after = [await read_position(conn, user, conv) for user, conv, _ in moves]
        return list(zip(before, after, strict=True))


async def read_position(conn: AsyncConnection, user_id: int, conv: int) -> int:
    if conv < 0:
        stmt = select(chat_t.c.to_read_seq).where(
            chat_t.c.team_id == -conv, chat_t.c.event_type == TEAM, chat_t.c.to_user_id == user_id
        )
    else:
        stmt = select(
            case(
                (chat_t.c.from_user_id == user_id, chat_t.c.from_read_seq),
                else_=chat_t.c.to_read_seq,
            )
        ).where(chat_t.c.chat_id == conv)
    return int((await conn.execute(stmt)).scalar() or 0)


async def receipt(conn: AsyncConnection, conv: int, seq: int) -> list[int] | None:
    """Who has read message ``seq`` (its sender excluded); None when there is no such one."""
    table = msg_table(conv)
    sender = (
        await conn.execute(select(table.c.from_user_id).where(in_conv(conv), table.c.seq == seq))
    ).scalar()
    return None if sender is None else await readers(conn, conv, seq, int(sender))
