"""One-to-one chats: the ``chat`` rows of pairs, ``person_msg`` rows and their unread counts.

A pair's row keeps the smaller user id in ``from_user_id``; ``from_unread_num`` counts what
that user has not read, ``to_unread_num`` what the other has not. Counts change only inside
the batched writer, in the same transaction as the messages they count, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.models import chat_table, person_msg_table
from imhub.storage.users import existing_users

chat_t = chat_table
msg_t = person_msg_table

PERSON = 0  # chat.event_type of a one-to-one chat


@dataclass(slots=True, frozen=True)
class PersonMsgIn:
    """A one-to-one message as the sender gave it, with the server's acceptance time."""

    from_user_id: int
    to_user_id: int
    client_type: int
    body_type: int
    body: str
    voice_time: int
    msg_id_client: str
    send_time: int


@dataclass(slots=True, frozen=True)
class StoredMsg:
    msg_id_server: int
    chat_id: int
    send_time: int
    read: bool  # the recipient was in the chat when it was stored: not counted as unread
    duplicate: bool  # stored earlier under the same (sender, msgIdClient): not delivered again


@dataclass(slots=True, frozen=True)
class ChatRow:
    chat_id: int
    from_user_id: int
    to_user_id: int

    def peer_of(self, user_id: int) -> int | None:
        """The other member of the pair, or None when ``user_id`` is not a member."""
        if user_id == self.from_user_id:
            return self.to_user_id
        if user_id == self.to_user_id:
            return self.from_user_id
        return None


@dataclass(slots=True, frozen=True)
class MsgRow:
    msg_id_server: int
    chat_id: int
    from_user_id: int
    to_user_id: int
    client_type: int
    body_type: int
    body: str
    voice_time: int
    msg_id_client: str
    send_time: int


class StorePersonMessages:
    """Writer kind: store a run of one-to-one messages with a handful of statements.

    ``in_chat(user_id, chat_id)`` says whether the recipient has a connection in the chat right
    now; such a message is stored read and not counted.
    """

    def __init__(self, in_chat: Callable[[int, int], bool], pair_cache_max: int = 100_000) -> None:
        self._in_chat = in_chat
        self._pairs: dict[tuple[int, int], int] = {}
        self._pair_cache_max = pair_cache_max

    async def run(
        self, conn: AsyncConnection, items: Sequence[PersonMsgIn]
    ) -> list[StoredMsg | ImError]:
        results: list[StoredMsg | ImError | None] = [None] * len(items)
        existing = await existing_users(conn, {m.to_user_id for m in items})
        earlier = await self._earlier(conn, items)
        first_of: dict[tuple[int, str], int] = {}
        fresh: list[int] = []
        for i, m in enumerate(items):
            key = (m.from_user_id, m.msg_id_client)
            if key in earlier:
                results[i] = earlier[key]
            elif key in first_of:
                pass  # a repeat inside this batch: answered from the first below
            elif m.to_user_id not in existing:
                results[i] = ImError(ErrorCode.NOT_FOUND, f"user {m.to_user_id} does not exist")
            else:
                first_of[key] = i
                fresh.append(i)
        chat_ids = await self._chat_ids(conn, {_pair(items[i]) for i in fresh})
        rows: list[dict[str, object]] = []
        placed: list[tuple[int, bool]] = []  # (chat id, read) of each fresh message
        unread: dict[int, list[int]] = {}
        for i in fresh:
            m = items[i]
            chat_id = chat_ids[_pair(m)]
            read = self._in_chat(m.to_user_id, chat_id)
            if not read:
                counts = unread.setdefault(chat_id, [0, 0])
                counts[0 if m.to_user_id < m.from_user_id else 1] += 1
            placed.append((chat_id, read))
            rows.append(
                {
                    "chat_id": chat_id,
                    "from_user_id": m.from_user_id,
                    "to_user_id": m.to_user_id,
                    "client_type": m.client_type,
                    "body_type": m.body_type,
                    "body": m.body,
                    "voice_time": m.voice_time,
                    "msg_id_client": m.msg_id_client,
                    "send_time": m.send_time,
                    "read_flag": read,
                    "cancel_flag": False,
                }
            )
        if rows:
            ids = (
                await conn.execute(
                    insert(msg_t).returning(msg_t.c.person_msg_id, sort_by_parameter_order=True),
                    rows,
                )
            ).scalars()
            for i, (chat_id, read), msg_id in zip(fresh, placed, ids, strict=True):
                results[i] = StoredMsg(msg_id, chat_id, items[i].send_time, read, False)
        if unread:
            await conn.execute(
                update(chat_t)
                .where(chat_t.c.chat_id == bindparam("c_id"))
                .values(
                    from_unread_num=chat_t.c.from_unread_num + bindparam("n_from"),
                    to_unread_num=chat_t.c.to_unread_num + bindparam("n_to"),
                ),
                [{"c_id": c, "n_from": f, "n_to": t} for c, (f, t) in unread.items()],
            )
        for i, m in enumerate(items):
            if results[i] is None:
                first = results[first_of[(m.from_user_id, m.msg_id_client)]]
                assert isinstance(first, StoredMsg)
                results[i] = StoredMsg(
                    first.msg_id_server, first.chat_id, first.send_time, first.read, True
                )
        return [r for r in results if r is not None]

    async def _earlier(
        self, conn: AsyncConnection, items: Sequence[PersonMsgIn]
    ) -> dict[tuple[int, str], StoredMsg]:
        keys = {(m.from_user_id, m.msg_id_client) for m in items}
        found = await conn.execute(
            select(
                msg_t.c.from_user_id,
                msg_t.c.msg_id_client,
                msg_t.c.person_msg_id,
                msg_t.c.chat_id,
                msg_t.c.send_time,
                msg_t.c.read_flag,
            ).where(tuple_(msg_t.c.from_user_id, msg_t.c.msg_id_client).in_(keys))
        )
        return {(f, c): StoredMsg(i, ch, t, bool(r), True) for f, c, i, ch, t, r in found}

    async def _chat_ids(
        self, conn: AsyncConnection, pairs: set[tuple[int, int]]
    ) -> dict[tuple[int, int], int]:
        known = {p: self._pairs[p] for p in pairs if p in self._pairs}
        missing = pairs - known.keys()
        if missing:
            found = await conn.execute(
                select(chat_t.c.from_user_id, chat_t.c.to_user_id, chat_t.c.chat_id).where(
                    chat_t.c.team_id == 0,
                    tuple_(chat_t.c.from_user_id, chat_t.c.to_user_id).in_(missing),
                )
            )
            for a, b, chat_id in found:
                known[(a, b)] = chat_id
            for a, b in missing - known.keys():
                known[(a, b)] = (
                    await conn.execute(
                        insert(chat_t)
                        .values(event_type=PERSON, from_user_id=a, to_user_id=b, team_id=0)
                        .returning(chat_t.c.chat_id)
                    )
                ).scalar_one()
            if len(self._pairs) > self._pair_cache_max:
                self._pairs.clear()
            self._pairs.update(known)
        return known

    def rolled_back(self) -> None:
        """A failed batch may have cached pairs whose new rows were rolled back."""
        self._pairs.clear()


class ResetUnread:
    """Writer kind: a user entered a chat; its messages to them become read, the count 0."""

    async def run(
        self, conn: AsyncConnection, items: Sequence[tuple[int, ChatRow]]
    ) -> list[ImError | None]:
        for user_id, chat in items:
            column = "from_unread_num" if user_id == chat.from_user_id else "to_unread_num"
            await conn.execute(
                update(chat_t).where(chat_t.c.chat_id == chat.chat_id).values({column: 0})
            )
            await conn.execute(
                update(msg_t)
                .where(
                    msg_t.c.chat_id == chat.chat_id,
                    msg_t.c.to_user_id == user_id,
                    msg_t.c.read_flag == False,  # noqa: E712 - SQL expression
                )
                .values(read_flag=True)
            )
        return [None] * len(items)


def _pair(m: PersonMsgIn) -> tuple[int, int]:
    a, b = m.from_user_id, m.to_user_id
    return (a, b) if a < b else (b, a)


async def get_chat(engine: AsyncEngine, chat_id: int) -> ChatRow | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(chat_t.c.chat_id, chat_t.c.from_user_id, chat_t.c.to_user_id).where(
                    chat_t.c.chat_id == chat_id, chat_t.c.event_type == PERSON
                )
            )
        ).first()
    return ChatRow(*row) if row else None


async def unread_counts(engine: AsyncEngine, user_id: int) -> list[tuple[int, int, int]]:
    """(chat id, peer user id, unread count) of every chat with unread messages for a user."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                chat_t.c.chat_id,
                chat_t.c.from_user_id,
                chat_t.c.to_user_id,
                chat_t.c.from_unread_num,
                chat_t.c.to_unread_num,
            )
            .where(
                chat_t.c.event_type == PERSON,
                or_(
                    (chat_t.c.from_user_id == user_id) & (chat_t.c.from_unread_num > 0),
                    (chat_t.c.to_user_id == user_id) & (chat_t.c.to_unread_num > 0),
                ),
            )
            .order_by(chat_t.c.chat_id)
        )
        return [(c, b, fn) if a == user_id else (c, a, tn) for c, a, b, fn, tn in rows]


async def unread_messages(
    engine: AsyncEngine, user_id: int, after_id: int, upto_id: int, limit: int
) -> list[MsgRow]:
    """A page of a user's unread messages with ids in (after_id, upto_id], oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                msg_t.c.person_msg_id,
                msg_t.c.chat_id,
                msg_t.c.from_user_id,
                msg_t.c.to_user_id,
                msg_t.c.client_type,
                msg_t.c.body_type,
                msg_t.c.body,
                msg_t.c.voice_time,
                msg_t.c.msg_id_client,
                msg_t.c.send_time,
            )
            .where(
                msg_t.c.to_user_id == user_id,
                msg_t.c.read_flag == False,  # noqa: E712
                msg_t.c.cancel_flag == False,  # noqa: E712
                msg_t.c.person_msg_id > after_id,
                msg_t.c.person_msg_id <= upto_id,
            )
            .order_by(msg_t.c.person_msg_id)
            .limit(limit)
        )
        return [MsgRow(*tuple(r)) for r in rows]


async def last_msg_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.max(msg_t.c.person_msg_id)))).scalar() or 0)
