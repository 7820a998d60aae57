"""Users: created, read, listed, changed and soft-deleted (``delete_flag``); looked up at login
and on send through ``KnownUsers``.

A deleted user's row stays (their messages keep their sender), but for everything else they
are gone: they cannot log in, receive, be added to a group or get a token. Deleting is a write
in the writer's stream (``DeleteUsers``), so a login or a send queued before it still sees the
user, and everything queued after it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.models import users_table
from imhub.storage.staged import Staged, Transaction

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

user_t = users_table

_COLUMNS = (user_t.c.user_id, user_t.c.username, user_t.c.mobile, user_t.c.head_img)
_LIVE = user_t.c.delete_flag == False  # noqa: E712 - SQL expression
CHUNK = 5_000


@dataclass(slots=True, frozen=True)
class UserRow:
    user_id: int
    username: str
    mobile: str
    head_img: str


async def add_user(engine: AsyncEngine, username: str, mobile: str, head_img: str = "") -> int:
    async with engine.begin() as conn:
        return int(
            (
                await conn.execute(
                    insert(user_t)
                    .values(username=username, mobile=mobile, head_img=head_img)
                    .returning(user_t.c.user_id)
                )
            ).scalar_one()
        )


async def get_user(engine: AsyncEngine, user_id: int) -> UserRow | None:
    """A user who exists and is not deleted."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(*_COLUMNS).where(user_t.c.user_id == user_id, _LIVE))
        ).first()
    return UserRow(*row) if row else None


async def list_users(engine: AsyncEngine, after: int, limit: int) -> list[UserRow]:
    """Users (not deleted) with an id above ``after``, by id: pages that neither skip nor
    repeat anyone, since ids only grow."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(*_COLUMNS)
            .where(user_t.c.user_id > after, _LIVE)
            .order_by(user_t.c.user_id)
            .limit(limit)
        )
        return [UserRow(*r) for r in rows]


async def update_user(engine: AsyncEngine, user_id: int, changes: dict[str, str]) -> UserRow | None:
    """Change the named columns (``username``, ``mobile``, ``head_img``) of a user who is not
    deleted; None when there is none."""
    async with engine.begin() as conn:
        if changes:
            await conn.execute(
                update(user_t).where(user_t.c.user_id == user_id, _LIVE).values(**changes)
            )
        row = (
            await conn.execute(select(*_COLUMNS).where(user_t.c.user_id == user_id, _LIVE))
        ).first()
    return UserRow(*row) if row else None


async def existing_users(conn: AsyncConnection, user_ids: set[int]) -> set[int]:
    """The ids among ``user_ids`` that belong to users who exist and are not deleted."""
    found: set[int] = set()
    ids = sorted(user_ids)
    # A few thousand at a time: a notice to everyone online may name more users than a
    # statement may have parameters (32,766 on SQLite).
    for start in range(0, len(ids), CHUNK):
        rows = await conn.execute(
            select(user_t.c.user_id).where(user_t.c.user_id.in_(ids[start : start + CHUNK]), _LIVE)
        )
        found.update(rows.scalars())
    return found


class KnownUsers:
    """Whether users exist, so that the send and login paths ask the database only about users
    they have not seen. ``True``: exists; ``False``: deleted while the server ran (a deletion is
    final, so the answer is kept too). Entries count once the transaction that read or wrote
    them committed (``staged.Staged``)."""

    def __init__(self, tx: Transaction, cache_max: int = 1_000_000, shared: bool = False) -> None:
        self._ids: Staged[int, bool] = Staged(tx, cache_max)
        # Several writers on the database: another may delete a user at any time, so only
        # a deletion (final) is trusted from the cache; "exists" is asked again each batch
        # (one query for all the batch's users).
        self._shared = shared

    async def existing(self, conn: AsyncConnection, user_ids: set[int]) -> set[int]:
        """Inside the writer: the ids among ``user_ids`` of users who exist."""
        known = self._ids
        if self._shared:
            unknown = {u for u in user_ids if u not in known or known[u]}
        else:
            unknown = {u for u in user_ids if u not in known}
        found = await existing_users(conn, unknown)
        if not self._shared:
            known.update((u, True) for u in found)
        return {u for u in user_ids - unknown if known[u]} | found

    def forget(self, user_id: int) -> None:
        """Inside the writer: the user was deleted in the open transaction."""
        self._ids[user_id] = False

    def invalidate(self, user_id: int | None = None) -> None:
        """Outside the writer: another node deleted ``user_id`` (None: forget every user),
        so the next batch that names them asks the database. The cluster calls this when it
        hears of a deletion; a ``False`` (deleted) is final and never goes stale."""
        self._ids.forget(user_id)


class DeleteUsers:
    """Writer kind: set ``delete_flag`` of each user; a user who does not exist (or was deleted
    already) is refused with 404. Returns the user id."""

    def __init__(self, users: KnownUsers) -> None:
        self._users = users

    def rows(self, items: Sequence[int], into: Rows) -> None:
        into.users.update(items)

    async def run(self, conn: AsyncConnection, items: Sequence[int]) -> list[int | ImError]:
        live = await existing_users(conn, set(items))
        if live:
            await conn.execute(
                update(user_t).where(user_t.c.user_id.in_(live)).values(delete_flag=True)
            )
        results: list[int | ImError] = []
        for user_id in items:
            if user_id in live:
                live.discard(user_id)  # the same user twice in a batch: deleted by the first
                self._users.forget(user_id)
                results.append(user_id)
            else:
                results.append(ImError(ErrorCode.NOT_FOUND, f"user {user_id} does not exist"))
        return results
