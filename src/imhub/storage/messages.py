"""Storing messages and recalls, for one-to-one chats and groups alike, in the batched writer.

A run of messages costs a handful of statements whatever its size: one lookup of earlier
copies (idempotency), one of recipients, one multi-row INSERT per table, one UPDATE of each
conversation's last sequence and of the read positions that moved. A group message is one row,
however many members the group has.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.conversation import conv_ids
from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.bulk import Script, select_where_pairs_in
from imhub.storage.chats import Pairs, pair
from imhub.storage.conversations import (
    CHAT_MSG,
    MESSAGE_COLUMNS,
    MsgRow,
    Sequences,
    advance_reads,
    in_conv,
    insert_rows,
    msg_table,
    person_t,
    select_messages,
    store_rows,
    team_msg_t,
    to_row,
)
from imhub.storage.teams import Teams
from imhub.storage.users import KnownUsers
from imhub.storage.writer import each

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

RECALL_MSG = 10  # msg_type of a recall event (the protocol's recall)


class MsgIn(msgspec.Struct, frozen=True, gc=False):
    """A message as its sender gave it, with the server's acceptance time."""

    from_user_id: int
    to_user_id: int  # one-to-one; 0 for a group
    team_id: int  # group; 0 for one-to-one
    client_type: int
    body_type: int
    body: str
    voice_time: int
    msg_id_client: str
    send_time: int


class Stored(msgspec.Struct, frozen=True, gc=False):
    row: MsgRow
    duplicate: bool  # stored earlier under the same (sender, msgIdClient): deliver nothing
    audience: frozenset[int] = frozenset()  # who receives it: both users, or the members
    readers: tuple[int, ...] = ()  # recipients who had the chat open: read at once


class StoreMessages:
    """Writer kind: store a run of messages. ``viewers(conv)`` are the users with a connection
    showing the conversation now; for those who are members the message is read at once."""

    def __init__(
        self,
        pairs: Pairs,
        teams: Teams,
        sequences: Sequences,
        viewers: Callable[[int], Collection[int]],
        users: KnownUsers,
    ) -> None:
        self._users = users
        self._pairs = pairs
        self._teams = teams
        self._seqs = sequences
        self._viewers = viewers

    def rows(self, items: Sequence[MsgIn], into: Rows) -> None:
        """Shared databases: each message's group, or its pair (``locks``)."""
        for m in items:
            if m.team_id:
                into.convs.add(-m.team_id)
            else:
                into.pairs.add(pair(m.from_user_id, m.to_user_id))

    async def run(self, conn: AsyncConnection, items: Sequence[MsgIn]) -> list[Stored | ImError]:
        """Store the batch as if every message were new (the unique key on (sender,
        msgIdClient) catches copies stored before); if one was not, undo, look the earlier
        copies up and store the rest."""
        results = await self._store(conn, items, {}, new_only=True)
        if results is None:
            results = await self._store(conn, items, await _earlier(conn, items), new_only=False)
            assert results is not None  # a plain insert raises instead of colliding
            return results
        # A retry refused now (the sender removed from the group or deleted, the peer
        # deleted) may be of a message stored before that: it gets its original answer, so a
        # client that lost the first answer does not show a delivered message as failed.
        refused = [m for m, r in zip(items, results, strict=True) if isinstance(r, ImError)]
        if refused:
            earlier = await _earlier(conn, refused)
            for i, m in enumerate(items):
                row = earlier.get(_retry_key(m))
                if row is not None and isinstance(results[i], ImError):
                    results[i] = Stored(row, True)
        return results

    async def _store(
        self,
        conn: AsyncConnection,
        items: Sequence[MsgIn],
        earlier: dict[tuple[bool, int, str], MsgRow],
        new_only: bool,
    ) -> list[Stored | ImError] | None:
        """None, with nothing stored, when ``new_only`` and a message was stored before."""
        # Every message passes the loops below: they are written for speed (no awaits for a
        # one-to-one message, no per-message objects beyond the row and its result).
        results: list[Stored | ImError | None] = [None] * len(items)
        # Senders too: one deleted while their messages were queued sends nothing after the
        # deletion (the writer's order decides what came before it).
        recipients = await self._users.existing(
            conn, {m.to_user_id for m in items if not m.team_id} | {m.from_user_id for m in items}
        )
        # Shared databases: the groups' rows and the pairs' are locked by now (``rows``), so
        # the membership checks below are made against what no one can change before this
        # transaction ends.
        first_of: dict[tuple[bool, int, str], int] = {}
        # (index, the group's conversation key or the one-to-one pair, audience)
        fresh: list[tuple[int, int | tuple[int, int], frozenset[int]]] = []
        pairs: set[tuple[int, int]] = set()
        for i, m in enumerate(items):
            key = (m.team_id != 0, m.from_user_id, m.msg_id_client)  # _retry_key, inline
            if key in earlier:
                results[i] = Stored(earlier[key], True)
                continue
            if key in first_of:
                continue  # a repeat inside this batch: answered from the first below
            if m.from_user_id not in recipients:
                results[i] = ImError(ErrorCode.UNAUTHORIZED, "user deleted")
                continue
            if m.team_id:
                info = await self._teams.get(conn, m.team_id)
                if info is None:
                    results[i] = ImError(ErrorCode.NOT_FOUND, f"no group {m.team_id}")
                    continue
                if m.from_user_id not in info.members:
                    results[i] = ImError(
                        ErrorCode.FORBIDDEN, f"you are not a member of group {m.team_id}"
                    )
                    continue
                fresh.append((i, -m.team_id, info.members))
            elif m.to_user_id not in recipients:
                results[i] = ImError(ErrorCode.NOT_FOUND, f"user {m.to_user_id} does not exist")
                continue
            else:
                p = pair(m.from_user_id, m.to_user_id)
                pairs.add(p)
                fresh.append((i, p, frozenset(p)))
            first_of[key] = i

        chat_ids = await self._pairs.chat_ids(conn, pairs)
        convs = [where if isinstance(where, int) else chat_ids[where] for _, where, _ in fresh]
        seqs = self._seqs
        await seqs.load(conn, convs)
        before = seqs.current(set(convs))
        viewers = self._viewers
        rows: list[MsgRow] = []
        readers_of: list[tuple[int, ...]] = []
        moves: list[tuple[int, int, int]] = []
        for (i, _, audience), conv in zip(fresh, convs, strict=True):
            m = items[i]
            seq = seqs.bump(conv)
            shown = viewers(conv)
            readers: tuple[int, ...] = ()
            if shown:
                readers = tuple(u for u in shown if u != m.from_user_id and u in audience)
                moves.extend((u, conv, seq) for u in readers)
            chat_id, team_id = conv_ids(conv)
            row = MsgRow(
                chat_id, team_id, seq, 0, CHAT_MSG, 0,
                m.from_user_id, m.to_user_id, m.client_type, m.body_type, m.body, m.voice_time,
                m.msg_id_client, m.send_time, False,
            )  # fmt: skip
            rows.append(row)
            readers_of.append(readers)
        script = Script(conn.dialect)  # every write of the batch in one hand-off
        finish = insert_rows(script, rows, new_only)
        seqs.save(script)
        advance_reads(script, moves)
        if not await script.run(conn):
            seqs.take_back(before)
            return None
        for (i, _, audience), row, readers in zip(fresh, finish(), readers_of, strict=True):
            results[i] = Stored(row, False, audience, readers)
        for i, m in enumerate(items):
            if results[i] is None:
                first = results[first_of[_retry_key(m)]]
                assert isinstance(first, Stored)
                results[i] = Stored(first.row, True)
        return results  # type: ignore[return-value]  # every slot is filled by now


def _retry_key(m: MsgIn) -> tuple[bool, int, str]:
    """What a retry repeats: the kind of conversation, the sender, the client's id."""
    return m.team_id != 0, m.from_user_id, m.msg_id_client


async def _earlier(
    conn: AsyncConnection, items: Sequence[MsgIn]
) -> dict[tuple[bool, int, str], MsgRow]:
    """Chat messages already stored under the batch's (sender, msgIdClient) keys."""
    found: dict[tuple[bool, int, str], MsgRow] = {}
    for is_team, table in ((False, person_t), (True, team_msg_t)):
        keys = {(m.from_user_id, m.msg_id_client) for m in items if bool(m.team_id) == is_team}
        if not keys:
            continue
        rows = await select_where_pairs_in(
            conn,
            MESSAGE_COLUMNS[is_team],
            table,
            ("from_user_id", "msg_id_client"),
            sorted(keys),
        )
        for r in rows:
            row = to_row(r)
            if row.msg_type == CHAT_MSG:  # the server's events do not live in clients' ids
                found[(is_team, row.from_user_id, row.msg_id_client)] = row
    return found


@dataclass(slots=True, frozen=True)
class RecallIn:
    user_id: int
    conv: int
    seq: int
    now: int  # epoch ms
    window_ms: int
    client_type: int


class Recall:
    """Writer kind: mark a message recalled and post the recall as the next event."""

    def __init__(self, teams: Teams, sequences: Sequences) -> None:
        self._teams = teams
        self._seqs = sequences

    def rows(self, items: Sequence[RecallIn], into: Rows) -> None:
        into.convs.update(item.conv for item in items)

    async def run(self, conn: AsyncConnection, items: Sequence[RecallIn]) -> list[Stored | ImError]:
        results = await each(items, partial(self._recall, conn))
        await self._seqs.flush(conn)
        return results

    async def _recall(self, conn: AsyncConnection, item: RecallIn) -> Stored:
        table = msg_table(item.conv)
        found = (
            await conn.execute(select_messages(item.conv).where(table.c.seq == item.seq))
        ).first()
        if found is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no message {item.seq} in this conversation")
        original = to_row(found)
        if original.from_user_id != item.user_id:
            raise ImError(ErrorCode.FORBIDDEN, "only the sender may recall a message")
        if original.msg_type != CHAT_MSG:
            raise ImError(ErrorCode.BAD_REQUEST, f"message {item.seq} cannot be recalled")
        audience = await self._audience(conn, original)
        if original.recalled:  # a repeated recall gets the first one's answer
            event = (
                await conn.execute(
                    select_messages(item.conv).where(
                        table.c.msg_type == RECALL_MSG, table.c.ref_seq == item.seq
                    )
                )
            ).first()
            assert event is not None
            return Stored(to_row(event), True, audience)
        if item.now - original.send_time > item.window_ms:
            raise ImError(
                ErrorCode.FORBIDDEN,
                f"messages can be recalled for {item.window_ms // 1000} s after they were sent",
            )
        await conn.execute(
            update(table)
            .where(in_conv(item.conv), table.c.seq == item.seq)
            .values(cancel_flag=True)
        )
        seq = await self._seqs.next(conn, item.conv)
        chat_id, team_id = conv_ids(item.conv)
        (event,) = await store_rows(
            conn,
            [
                MsgRow(
                    chat_id=chat_id,
                    team_id=team_id,
                    seq=seq,
                    msg_id_server=0,
                    msg_type=RECALL_MSG,
                    ref_seq=item.seq,
                    from_user_id=item.user_id,
                    to_user_id=original.to_user_id,
                    client_type=item.client_type,
                    body_type=original.body_type,
                    body="",
                    voice_time=0,
                    # The server's own id of the event, apart from the sender's chat ids.
                    msg_id_client=f"recall-{item.conv}-{item.seq}",
                    send_time=item.now,
                    recalled=False,
                )
            ],
        )
        return Stored(event, False, audience)

    async def _audience(self, conn: AsyncConnection, row: MsgRow) -> frozenset[int]:
        if row.team_id:
            info = await self._teams.get(conn, row.team_id)
            return info.members if info else frozenset()
        return frozenset((row.from_user_id, row.to_user_id))
