"""One-to-one chats: one ``chat`` row per pair of users, created with its first message.

The smaller user id is ``from_user_id``; ``from_read_seq`` and ``to_read_seq`` are each side's
read position, ``last_seq`` the pair's newest sequence number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol.errors import ImError
from imhub.storage.bulk import select_where_pairs_in
from imhub.storage.conversations import PERSON
from imhub.storage.models import chat_table
from imhub.storage.staged import Staged, Transaction
from imhub.storage.users import existing_users

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

chat_t = chat_table


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


def pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


_PAIR_COLUMNS = [
    chat_t.c.from_user_id, chat_t.c.to_user_id, chat_t.c.chat_id, chat_t.c.event_type,
    chat_t.c.team_id,
]  # fmt: skip


class Pairs:
    """Pair → chat id, created on first use inside the writer's transaction; cached, and a
    pair row created in a transaction that does not commit is never remembered."""

    def __init__(self, tx: Transaction, cache_max: int = 200_000) -> None:
        self._ids: Staged[tuple[int, int], int] = Staged(tx, cache_max)

    async def chat_ids(
        self, conn: AsyncConnection, pairs: set[tuple[int, int]], users_checked: bool = True
    ) -> dict[tuple[int, int], int]:
        """The chat id of each pair, creating the rows that do not exist. Without
        ``users_checked`` (``locks.RowLocks``, before the batch's own checks) only pairs of
        two users who exist are created; the others are left out."""
        ids = self._ids
        known = {p: ids[p] for p in pairs if p in ids}
        missing = pairs - known.keys()
        if not missing:
            return known
        await self._find(conn, missing, known)
        new = sorted(missing - known.keys())
        if new and not users_checked:
            live = await existing_users(conn, {u for p in new for u in p})
            new = [(a, b) for a, b in new if a in live and b in live]
        if new:
            # Another writer may create the same pair at the same moment: rows that collide
            # with the pair's unique key are skipped (after waiting for that writer's commit)
            # and then read like the others. In pair order, so two writers cannot deadlock.
            await conn.execute(_insert_skipping_duplicates(conn.dialect.name), [
                {"event_type": PERSON, "from_user_id": a, "to_user_id": b, "team_id": 0}
                for a, b in new
            ])  # fmt: skip
            await self._find(conn, set(new), known)
        return known

    async def _find(
        self, conn: AsyncConnection, pairs: set[tuple[int, int]], known: dict[tuple[int, int], int]
    ) -> None:
        found = await select_where_pairs_in(
            conn, _PAIR_COLUMNS, chat_t, ("from_user_id", "to_user_id"), sorted(pairs)
        )
        ids = self._ids
        for a, b, chat_id, event_type, team_id in found:
            if event_type == PERSON and team_id == 0:
                known[(a, b)] = ids[(a, b)] = chat_id


def _insert_skipping_duplicates(dialect: str) -> Any:
    """An INSERT of pair rows that skips those that exist (and nothing else: MySQL's
    ``INSERT IGNORE`` would also turn errors into warnings)."""
    if dialect in ("mysql", "mariadb"):
        stmt = mysql_insert(chat_t)
        return stmt.on_duplicate_key_update(chat_id=stmt.table.c.chat_id)
    if dialect == "postgresql":
        return pg_insert(chat_t).on_conflict_do_nothing()
    return sqlite_insert(chat_t).on_conflict_do_nothing()


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


class EnsurePairs:
    """Writer kind: the chat id of each pair ``(a, b)``, creating rows that do not exist."""

    def __init__(self, pairs: Pairs) -> None:
        self._pairs = pairs

    def rows(self, items: Sequence[tuple[int, int]], into: Rows) -> None:
        into.pairs.update(pair(a, b) for a, b in items)

    async def run(
        self, conn: AsyncConnection, items: Sequence[tuple[int, int]]
    ) -> list[int | ImError]:
        ids = await self._pairs.chat_ids(conn, {pair(a, b) for a, b in items})
        return [ids[pair(a, b)] for a, b in items]
