"""System messages: written by a business backend into a one-to-one chat or a group, stored
and numbered like any chat message (``msg_type`` 3) from the system sender (``from_user_id``
0, client type REST), so history, sync, unread counts and the login backlog carry them with
no special case. In a one-to-one chat the row's ``to_user_id`` is 0: it is to both users.

A retry with the same ``msg_id_client`` stores nothing new and answers with the first copy
(the unique key of the message tables covers the system sender too).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.conversation import conv_ids
from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.bulk import Script
from imhub.storage.conversations import (
    CHAT_MSG,
    PERSON,
    SYSTEM_USER,
    MsgRow,
    Sequences,
    advance_reads,
    chat_t,
    insert_rows,
    message_columns,
    msg_table,
    to_row,
)
from imhub.storage.messages import Stored
from imhub.storage.teams import Teams
from imhub.storage.writer import each

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

REST_CLIENT = 5  # the protocol's ClientType.REST


@dataclass(slots=True, frozen=True)
class SystemIn:
    conv: int  # a chat id, or minus a group id
    body_type: int
    body: str
    msg_id_client: str
    send_time: int


class StoreSystemMessages:
    """Writer kind: store system messages. As for users' messages, members showing the
    conversation (``viewers``) have read it at once."""

    def __init__(
        self, teams: Teams, sequences: Sequences, viewers: Callable[[int], Collection[int]]
    ) -> None:
        self._teams = teams
        self._seqs = sequences
        self._viewers = viewers

    def rows(self, items: Sequence[SystemIn], into: Rows) -> None:
        into.convs.update(item.conv for item in items)

    async def run(self, conn: AsyncConnection, items: Sequence[SystemIn]) -> list[Stored | ImError]:
        return await each(items, partial(self._store, conn))

    async def _store(self, conn: AsyncConnection, item: SystemIn) -> Stored:
        audience = await self._audience(conn, item.conv)
        table = msg_table(item.conv)
        earlier = (
            await conn.execute(
                select(*message_columns(item.conv < 0)).where(
                    table.c.from_user_id == SYSTEM_USER,
                    table.c.msg_id_client == item.msg_id_client,
                    table.c.msg_type == CHAT_MSG,
                )
            )
        ).first()
        if earlier is not None:
            row = to_row(earlier)
            if row.conv != item.conv:
                raise ImError(
                    ErrorCode.CONFLICT,
                    f"msgIdClient {item.msg_id_client!r} names a system message of another"
                    " conversation",
                )
            return Stored(row, True, audience)
        seq = await self._seqs.next(conn, item.conv)
        readers = tuple(u for u in self._viewers(item.conv) if u in audience)
        chat_id, team_id = conv_ids(item.conv)
        row = MsgRow(
            chat_id, team_id, seq, 0, CHAT_MSG, 0, SYSTEM_USER, 0, REST_CLIENT, item.body_type,
            item.body, 0, item.msg_id_client, item.send_time, False,
        )  # fmt: skip
        script = Script(conn.dialect)
        finish = insert_rows(script, [row])
        self._seqs.save(script)
        advance_reads(script, [(u, item.conv, seq) for u in readers])
        await script.run(conn)
        (stored,) = finish()
        return Stored(stored, False, audience, readers)

    async def _audience(self, conn: AsyncConnection, conv: int) -> frozenset[int]:
        """Who is in the conversation; 404 when there is no such chat or (live) group."""
        if conv < 0:
            info = await self._teams.get(conn, -conv)
            if info is None:
                raise ImError(ErrorCode.NOT_FOUND, f"no group {-conv}")
            return info.members
        found = (
            await conn.execute(
                select(chat_t.c.from_user_id, chat_t.c.to_user_id).where(
                    chat_t.c.chat_id == conv, chat_t.c.event_type == PERSON
                )
            )
        ).first()
        if found is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no chat {conv}")
        return frozenset(found)
