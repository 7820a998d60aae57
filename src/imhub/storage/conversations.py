"""What one-to-one chats and groups share: conversation keys, message rows with per-chat
sequence numbers, the sequence allocator and read positions.

A conversation is a one-to-one chat (``chat_id``) or a group (``team_id``); internally one int
key holds either (``protocol.conversation``). Every message, recall and
group event in a conversation gets the next sequence number of that conversation, assigned in
the batched writer; each member's read position is the highest sequence they have read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from sqlalchemy import (
    BindParameter,
    ColumnClause,
    Select,
    Table,
    bindparam,
    case,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.conversation import conv_key
from imhub.storage.bulk import Script
from imhub.storage.models import chat_table, person_msg_table, team_msg_table, team_table
from imhub.storage.staged import Staged, Transaction

log = logging.getLogger(__name__)

chat_t = chat_table
person_t = person_msg_table
team_t = team_table
team_msg_t = team_msg_table

PERSON = 0  # chat.event_type of a one-to-one chat
TEAM = 1  # chat.event_type of a group member row
CHAT_MSG = 3  # msg_type of an ordinary message (the protocol's chat)
SYSTEM_USER = 0  # from_user_id of system messages (user ids start at 1)


class MsgRow(msgspec.Struct, gc=False):
    """A stored message or event, as both kinds of conversation hold it. Not to be changed
    once stored (``insert_rows`` fills in ``msg_id_server``; copying a row per message costs
    more than the rest of storing it). A ``msgspec.Struct``: made for every message, and
    about ten times cheaper to create than a dataclass."""

    chat_id: int  # 0 in a group
    team_id: int  # 0 in a one-to-one chat
    seq: int
    msg_id_server: int
    msg_type: int
    ref_seq: int
    from_user_id: int
    to_user_id: int  # 0 in a group
    client_type: int
    body_type: int
    body: str
    voice_time: int
    msg_id_client: str
    send_time: int
    recalled: bool

    @property
    def conv(self) -> int:
        return conv_key(self.chat_id, self.team_id)


# The columns both message tables share, in the order MsgRow holds them.
_PAYLOAD = (
    "client_type",
    "body_type",
    "body",
    "voice_time",
    "msg_id_client",
    "send_time",
    "cancel_flag",
)


def message_columns(team: bool) -> list[Any]:
    """The ``MsgRow`` columns of the group or the one-to-one message table, in its order."""
    t = team_msg_t if team else person_t
    zero: ColumnClause[int] = literal_column("0")
    return [
        zero.label("chat_id") if team else t.c.chat_id,
        t.c.team_id if team else zero.label("team_id"),
        t.c.seq,
        t.c.team_msg_id if team else t.c.person_msg_id,
        t.c.msg_type,
        t.c.ref_seq,
        t.c.from_user_id,
        zero.label("to_user_id") if team else t.c.to_user_id,
        *(t.c[name] for name in _PAYLOAD),
    ]


# Columns written for a new row, in the order of ``_values``; every NOT NULL column is given.
_COMMON = ("seq", "msg_type", "ref_seq", "from_user_id", *_PAYLOAD, "read_flag", "version",
           "delete_flag")  # fmt: skip
_PERSON_COLUMNS = ("chat_id", "to_user_id", *_COMMON)
_TEAM_COLUMNS = ("team_id", *_COMMON, "read_num")
# team? -> (columns written, columns returned: the id and what identifies the row)
_INSERT = {
    False: (_PERSON_COLUMNS, ("person_msg_id", "chat_id", "seq")),
    True: (_TEAM_COLUMNS, ("team_msg_id", "team_id", "seq")),
}


def _values(row: MsgRow) -> tuple[Any, ...]:
    common = (
        row.seq, row.msg_type, row.ref_seq, row.from_user_id, row.client_type, row.body_type,
        row.body, row.voice_time, row.msg_id_client, row.send_time, row.recalled, False, 0,
        False,
    )  # fmt: skip
    if row.team_id:
        return (row.team_id, *common, 0)
    return (row.chat_id, row.to_user_id, *common)


def insert_rows(
    script: Script, rows: list[MsgRow], new_only: bool = False
) -> Callable[[], list[MsgRow]]:
    """Add the inserts of new rows to ``script`` (one multi-row statement per table); after the
    script ran, the returned function gives each row its id and returns the rows. With
    ``new_only``, a row that collides with a unique key undoes the script (see ``Script``).

    Ids are matched by (conversation, seq), which is unique, so the database may return them
    in any order (asking for parameter order makes SQLAlchemy send one statement per row on
    SQLite)."""
    returned: list[tuple[bool, list[tuple[Any, ...]]]] = []
    for team in (False, True):
        part = [_values(r) for r in rows if bool(r.team_id) == team]
        if part:
            out = script.insert_returning(
                team_msg_t if team else person_t,
                _TEAM_COLUMNS if team else _PERSON_COLUMNS,
                part,
                (
                    "team_msg_id" if team else "person_msg_id",
                    "team_id" if team else "chat_id",
                    "seq",
                ),
                new_only,
            )
            returned.append((team, out))

    def finish() -> list[MsgRow]:
        ids = {
            (-conv_id if team else conv_id, seq): msg_id
            for team, out in returned
            for msg_id, conv_id, seq in out
        }
        for r in rows:
            r.msg_id_server = ids[(r.conv, r.seq)]
        return rows

    return finish


async def store_rows(conn: AsyncConnection, rows: list[MsgRow]) -> list[MsgRow]:
    """``insert_rows`` on its own: store the rows now; the rows with their ids."""
    script = Script(conn.dialect)
    finish = insert_rows(script, rows)
    await script.run(conn)
    return finish()


# The same lists as values, so that statements built from them compile once (bulk._compile).
MESSAGE_COLUMNS = {False: message_columns(False), True: message_columns(True)}


def msg_table(conv: int) -> Table:
    return team_msg_t if conv < 0 else person_t


def select_messages(conv: int) -> Select[Any]:
    """A SELECT of ``MsgRow`` columns over one conversation's messages."""
    return select(*message_columns(conv < 0)).where(in_conv(conv))


def in_conv(conv: int) -> Any:
    """The WHERE clause that picks one conversation's rows of its message table."""
    return team_msg_t.c.team_id == -conv if conv < 0 else person_t.c.chat_id == conv


def to_row(r: Sequence[Any]) -> MsgRow:
    (chat_id, team_id, seq, msg_id, msg_type, ref_seq, from_id, to_id, client, body_type, body,
     voice, mid, send_time, recalled) = r  # fmt: skip
    return MsgRow(
        int(chat_id), int(team_id), seq, msg_id, msg_type, ref_seq, from_id, int(to_id), client,
        body_type, body, voice, mid, send_time, bool(recalled),
    )  # fmt: skip


async def messages_between(
    conn: AsyncConnection, conv: int, after: int, upto: int | None, limit: int
) -> list[MsgRow]:
    """Messages with ``after < seq <= upto``, oldest first, at most ``limit``."""
    table = msg_table(conv)
    stmt = select_messages(conv).where(table.c.seq > after)
    if upto is not None:
        stmt = stmt.where(table.c.seq <= upto)
    rows = await conn.execute(stmt.order_by(table.c.seq).limit(limit))
    return [to_row(r) for r in rows]


async def messages_before(
    conn: AsyncConnection, conv: int, before: int, limit: int
) -> list[MsgRow]:
    """The ``limit`` messages just before ``before``, oldest first (a history page)."""
    table = msg_table(conv)
    rows = await conn.execute(
        select_messages(conv).where(table.c.seq < before).order_by(table.c.seq.desc()).limit(limit)
    )
    return [to_row(r) for r in reversed(rows.all())]


class Sequences:
    """The last sequence number of each conversation, handed out inside the writer.

    One writer per database (SQLite, ``shared=False``): loaded from ``chat.last_seq`` /
    ``team.last_seq`` on first use and cached; the writer is the only one to change them, so
    the cache is exact. Numbers handed out in a transaction that does not commit are never
    kept (``staged.Staged``), so a failed write consumes no number.

    Several writers (PostgreSQL, MySQL/MariaDB, ``shared=True``): the conversation's row is
    the allocator all writers agree on. ``load`` reads ``last_seq`` with ``SELECT … FOR
    UPDATE`` and the row stays locked until the transaction ends; the numbers are written back
    in the same transaction. Nothing is kept past the transaction. Every conversation a batch
    will touch (numbers, read positions, membership) is loaded at the start of its
    transaction, in the one order of ``locks.RowLocks`` (groups, then chats, each by id), so
    two writers cannot wait on each other in a circle; ``seal`` marks the end of that pass,
    and a later ``load`` of a row nobody declared is logged as the bug it is. The locks are
    thus taken before any savepoint of the batch, as they must be: rolling back to a
    savepoint may release the locks taken after it (PostgreSQL does). The team row's
    ``version`` (bumped by every membership change) is read under the same lock, for
    ``teams.Teams`` to check its member lists by.

    In both cases the value written back is in the row, and the row's unique ``(conversation,
    seq)`` key on the messages backs it up.
    """

    def __init__(self, tx: Transaction, cache_max: int = 200_000, shared: bool = False) -> None:
        self.shared = shared
        self._last: Staged[int, int] | dict[int, int]
        if shared:
            self._last = {}  # rows locked by the open transaction
            tx.scratch(self._last.clear)
        else:
            self._last = Staged(tx, cache_max)
        # Group -> (version, dissolved) read under the row's lock; None: no such group.
        self._teams: dict[int, tuple[int, bool] | None] = {}
        tx.scratch(self._teams.clear)
        self._unsaved: set[int] = set()  # numbers handed out and not yet in a script
        tx.scratch(self._unsaved.clear)
        self._sealed = False  # shared: the batch's ordered pass of locks is over
        tx.scratch(self._unseal)

    def seal(self) -> None:
        """Shared: the batch's rows are locked (``locks.RowLocks``); lock no more."""
        self._sealed = True

    def _unseal(self) -> None:
        self._sealed = False

    def created(self, conv: int) -> None:
        """A conversation whose row this transaction inserted (a new group): its numbers
        start at 0, and its row is locked already (no other writer can see it yet)."""
        self._last[conv] = 0
        if conv < 0:
            self._teams[-conv] = (0, False)

    async def load(self, conn: AsyncConnection, convs: Iterable[int]) -> None:
        """Make sure the last numbers of ``convs`` are known (one query per kind for those
        not known yet; shared: locked), so that ``bump`` can hand out the next ones without
        waiting."""
        last = self._last
        missing = {c for c in convs if c not in last}
        if not missing:
            return
        if self._sealed and any(missing):  # (0 names no conversation: nothing to lock)
            log.warning("rows locked after the batch's ordered pass: %s", sorted(missing))
        teams = sorted(-c for c in missing if c < 0)
        chats = sorted(c for c in missing if c > 0)
        if teams:
            stmt = select(team_t.c.team_id, team_t.c.last_seq, team_t.c.version,
                          team_t.c.delete_flag).where(team_t.c.team_id.in_(teams))  # fmt: skip
            if self.shared:
                stmt = stmt.order_by(team_t.c.team_id).with_for_update()
            found = {int(t): (int(s), int(v), bool(d)) for t, s, v, d in await conn.execute(stmt)}
            for t in teams:
                seq, version, dissolved = found.get(t, (0, 0, True))
                last[-t] = seq
                self._teams[t] = (version, dissolved) if t in found else None
        if chats:
            chat_stmt: Select[Any] = select(chat_t.c.chat_id, chat_t.c.last_seq).where(
                chat_t.c.chat_id.in_(chats)
            )
            if self.shared:
                chat_stmt = chat_stmt.order_by(chat_t.c.chat_id).with_for_update()
            found_chats = {int(c): int(s) for c, s in await conn.execute(chat_stmt)}
            for c in chats:
                last[c] = found_chats.get(c, 0)

    async def team_version(self, conn: AsyncConnection, team_id: int) -> tuple[int, bool] | None:
        """Shared: the group's (version, dissolved) under its row's lock; None: no group."""
        if team_id not in self._teams or -team_id not in self._last:
            await self.load(conn, (-team_id,))
        return self._teams.get(team_id)

    async def last(self, conn: AsyncConnection, conv: int) -> int:
        await self.load(conn, (conv,))
        return self._last[conv]

    def bump(self, conv: int) -> int:
        """The next number of a conversation ``load`` made known."""
        value = self._last[conv] + 1
        self._last[conv] = value
        self._unsaved.add(conv)
        return value

    async def next(self, conn: AsyncConnection, conv: int) -> int:
        await self.load(conn, (conv,))
        return self.bump(conv)

    def current(self, convs: Iterable[int]) -> dict[int, int]:
        """The last numbers of ``convs`` (known through ``load``), for ``take_back``."""
        last = self._last
        return {c: last[c] for c in convs}

    def take_back(self, current: dict[int, int]) -> None:
        """Undo the numbers handed out since ``current`` was taken: their rows were undone
        (a savepoint inside the transaction; the transaction itself needs no call)."""
        self._last.update(current.items())

    def save(self, script: Script) -> None:
        """Add to ``script`` the writes of the numbers allocated since the last save."""
        if not self._unsaved:
            return
        last = self._last
        chats = [{"c": c, "s": last[c]} for c in sorted(self._unsaved) if c > 0]
        teams = [{"c": -c, "s": last[c]} for c in sorted(self._unsaved) if c < 0]
        script.execute_many(_SAVE_CHAT, chats)
        script.execute_many(_SAVE_TEAM, teams)
        self._unsaved.clear()

    async def flush(self, conn: AsyncConnection) -> None:
        """``save`` on its own, now (for kinds that write nothing else in bulk)."""
        script = Script(conn.dialect)
        self.save(script)
        await script.run(conn)


def advance_reads(script: Script, moves: Iterable[tuple[int, int, int]]) -> None:
    """Add to ``script`` the moves of read positions: ``(user_id, conv, seq)``, forward only.

    One-to-one: the user's side of the pair row; group: the member's row. One statement per
    kind of conversation, however many positions move.
    """
    best: dict[tuple[int, int], int] = {}
    for user_id, conv, upto in moves:
        if upto > best.get((user_id, conv), 0):
            best[(user_id, conv)] = upto
    script.execute_many(
        _READ_PAIR, [{"u": u, "c": c, "s": s} for (u, c), s in best.items() if c > 0]
    )
    script.execute_many(
        _READ_MEMBER, [{"u": u, "t": -c, "s": s} for (u, c), s in best.items() if c < 0]
    )


_SAVE_CHAT = (
    update(chat_t).where(chat_t.c.chat_id == bindparam("c")).values(last_seq=bindparam("s"))
)
_SAVE_TEAM = (
    update(team_t).where(team_t.c.team_id == bindparam("c")).values(last_seq=bindparam("s"))
)
_user: BindParameter[int] = bindparam("u")
_seq: BindParameter[int] = bindparam("s")
_READ_PAIR = (
    update(chat_t)
    .where(chat_t.c.chat_id == bindparam("c"))
    .values(
        from_read_seq=case(
            ((chat_t.c.from_user_id == _user) & (chat_t.c.from_read_seq < _seq), _seq),
            else_=chat_t.c.from_read_seq,
        ),
        to_read_seq=case(
            ((chat_t.c.to_user_id == _user) & (chat_t.c.to_read_seq < _seq), _seq),
            else_=chat_t.c.to_read_seq,
        ),
    )
)
_READ_MEMBER = (
    update(chat_t)
    .where(
        chat_t.c.team_id == bindparam("t"),
        chat_t.c.to_user_id == _user,
        chat_t.c.event_type == TEAM,
        chat_t.c.to_read_seq < _seq,
    )
    .values(to_read_seq=_seq)
)
