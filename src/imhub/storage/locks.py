"""Several writers on one database: a batch takes every row lock it needs in one global order,
before anything else it does locks a row, so no two writers ever wait on each other in a
circle (a deadlock, which PostgreSQL takes ``deadlock_timeout``, a second, to notice).

Each kind of write says, from its items alone, which rows they will lock (``LocksRows``):
the conversations they number, read or change, the pairs they may create, the users they
delete, the notice targets they claim. The writer collects them for the whole batch and
``RowLocks`` locks them at the start of the transaction, in this order, each class in id
order and in one statement:

1. ``team`` rows (group sequence numbers, membership, and the right to write member rows);
2. new pair rows: inserted, in pair order (another writer creating the same pair waits here);
3. ``chat`` pair rows (one-to-one sequence numbers and both read positions);
4. ``users`` rows to delete;
5. ``notice_target`` rows to claim (a login's pending notices, another node's claims).

Rules that keep it whole: a group's member rows (``chat`` rows with its ``team_id``: read
positions, joins, leaves) are only ever written by a transaction that holds the group's
``team`` row, so they need no place of their own in the order; every other row a batch
writes is one it inserts (messages, events, notices, new groups), which no other writer can
see, let alone lock, before the commit. A lock taken after the pass (``Sequences.load`` of a
conversation nobody declared) still works, and is logged as the bug it is.

SQLite has one writer: nothing of this runs there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.storage.chats import Pairs
from imhub.storage.conversations import Sequences
from imhub.storage.models import notice_target_table, users_table

T_contra = TypeVar("T_contra", contravariant=True)

target_t = notice_target_table
user_t = users_table


class Rows:
    """The rows a batch will lock, collected from its items before anything runs."""

    __slots__ = ("claims", "convs", "logins", "pairs", "users")

    def __init__(self) -> None:
        self.convs: set[int] = set()  # conversation keys: chat ids, and minus team ids
        self.pairs: set[tuple[int, int]] = set()  # one-to-one chats by their users (a < b)
        self.users: set[int] = set()  # users to delete
        self.logins: set[int] = set()  # users whose pending notice targets a login claims
        self.claims: set[tuple[int, int]] = set()  # (notice_id, user_id) targets claimed


@runtime_checkable
class LocksRows(Protocol[T_contra]):
    """A kind of write that locks rows: adds those its items will lock to ``into``."""

    def rows(self, items: Sequence[T_contra], into: Rows) -> None: ...


class RowLocks:
    """The ordered pass at the start of each batch's transaction (shared databases only)."""

    def __init__(self, sequences: Sequences, pairs: Pairs) -> None:
        assert sequences.shared
        self._seqs = sequences
        self._pairs = pairs

    async def __call__(self, conn: AsyncConnection, runs: Sequence[tuple[Any, list[Any]]]) -> None:
        """Lock what the batch's runs of ``(kind, items)`` will lock."""
        rows = Rows()
        for kind, items in runs:
            if isinstance(kind, LocksRows):
                kind.rows(items, rows)
        await self.take(conn, rows)

    async def take(self, conn: AsyncConnection, rows: Rows) -> None:
        seqs = self._seqs
        await seqs.load(conn, {c for c in rows.convs if c < 0})  # 1: groups
        chats = {c for c in rows.convs if c > 0}
        if rows.pairs:  # 2: the pairs' rows, new ones created in pair order
            chats.update(
                (await self._pairs.chat_ids(conn, rows.pairs, users_checked=False)).values()
            )
        await seqs.load(conn, chats)  # 3: pairs
        if rows.users:  # 4
            await conn.execute(
                select(user_t.c.user_id)
                .where(user_t.c.user_id.in_(sorted(rows.users)))
                .order_by(user_t.c.user_id)
                .with_for_update()
            )
        if rows.logins or rows.claims:  # 5: found first, then locked by id in one order
            targets: set[int] = set()
            if rows.logins:
                found = await conn.execute(
                    select(target_t.c.notice_target_id).where(
                        target_t.c.to_user_id.in_(sorted(rows.logins)),
                        target_t.c.delivered == False,  # noqa: E712 - SQL expression
                    )
                )
                targets.update(found.scalars())
            if rows.claims:
                found = await conn.execute(
                    select(target_t.c.notice_target_id).where(
                        tuple_(target_t.c.notice_id, target_t.c.to_user_id).in_(sorted(rows.claims))
                    )
                )
                targets.update(found.scalars())
            if targets:
                await conn.execute(
                    select(target_t.c.notice_target_id)
                    .where(target_t.c.notice_target_id.in_(sorted(targets)))
                    .order_by(target_t.c.notice_target_id)
                    .with_for_update()
                )
        seqs.seal()
