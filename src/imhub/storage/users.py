"""Users: created by ``imhub user add`` or the HTTP API; looked up at login and on send."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.storage.models import users_table
from imhub.storage.staged import Staged, Transaction

user_t = users_table


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
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    user_t.c.user_id, user_t.c.username, user_t.c.mobile, user_t.c.head_img
                ).where(user_t.c.user_id == user_id, user_t.c.delete_flag == False)  # noqa: E712
            )
        ).first()
    return UserRow(*row) if row else None


async def first_users(engine: AsyncEngine, n: int) -> list[UserRow]:
    """The ``n`` users with the lowest ids (not deleted), oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(user_t.c.user_id, user_t.c.username, user_t.c.mobile, user_t.c.head_img)
            .where(user_t.c.delete_flag == False)  # noqa: E712
            .order_by(user_t.c.user_id)
            .limit(n)
        )
    return [UserRow(*row) for row in rows]


async def existing_users(conn: AsyncConnection, user_ids: set[int]) -> set[int]:
    """The ids among ``user_ids`` that belong to users who exist and are not deleted."""
    if not user_ids:
        return set()
    found = await conn.execute(
        select(user_t.c.user_id).where(
            user_t.c.user_id.in_(user_ids),
            user_t.c.delete_flag == False,  # noqa: E712
        )
    )
    return set(found.scalars())


class KnownUsers:
    """Users known to exist, so that the send path asks the database only about new ones.

    Users are created while the server runs but not deleted (``delete_flag`` is for offline
    maintenance; restart the server after setting it), so a positive answer can be kept; it is
    kept once the transaction that read it committed (``staged.Staged``)."""

    def __init__(self, tx: Transaction, cache_max: int = 1_000_000) -> None:
        self._ids: Staged[int, bool] = Staged(tx, cache_max)

    async def existing(self, conn: AsyncConnection, user_ids: set[int]) -> set[int]:
        known = self._ids
        unknown = {u for u in user_ids if u not in known}
        found = await existing_users(conn, unknown)
        known.update((u, True) for u in found)
        return (user_ids - unknown) | found
