"""Notices: stored once with one target row per user; each target is delivered exactly once.

Whether a target is delivered live is decided inside the writer's transaction from who is
online at that point; a login claims the targets still pending in the same ordered stream,
so a notice racing a login is handed over by exactly one of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.errors import ErrorCode, ImError, unknown_users
from imhub.storage.models import notice_table, notice_target_table
from imhub.storage.reads import ConvState, conversations_of
from imhub.storage.staged import Transaction
from imhub.storage.users import KnownUsers, existing_users

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

notice_t = notice_table
target_t = notice_target_table


@dataclass(slots=True, frozen=True)
class NoticeIn:
    from_user_id: int
    body_type: int
    body: str
    send_time: int
    to_user_ids: tuple[int, ...]
    # Whether a target that does not exist (or was deleted) refuses the notice (404) or is
    # left out (the members of a group, everyone online).
    strict: bool = True
    # Only the targets online at this point of the write stream get it (everyone online).
    online_only: bool = False


@dataclass(slots=True, frozen=True)
class NoticeRow:
    notice_id: int
    from_user_id: int
    body_type: int
    body: str
    send_time: int


@dataclass(slots=True, frozen=True)
class StoredNotice:
    notice: NoticeRow
    live: tuple[int, ...]  # online when stored: marked delivered, to be written to them now
    pending: tuple[int, ...]  # offline: delivered on their next login


class StoreNotices:
    """Writer kind: store notices, marking targets that are online as delivered."""

    def __init__(self, online: Callable[[int], bool]) -> None:
        self._online = online

    async def run(
        self, conn: AsyncConnection, items: Sequence[NoticeIn]
    ) -> list[StoredNotice | ImError]:
        results: list[StoredNotice | ImError] = []
        for n in items:
            existing = await existing_users(conn, set(n.to_user_ids))
            missing = set(n.to_user_ids) - existing
            if missing and n.strict:
                results.append(ImError(ErrorCode.NOT_FOUND, unknown_users(missing)))
                continue
            targets = tuple(
                u
                for u in n.to_user_ids
                if u not in missing and (self._online(u) or not n.online_only)
            )
            notice_id = (
                await conn.execute(
                    insert(notice_t)
                    .values(
                        from_user_id=n.from_user_id,
                        body_type=n.body_type,
                        body=n.body,
                        send_time=n.send_time,
                    )
                    .returning(notice_t.c.notice_id)
                )
            ).scalar_one()
            live = tuple(u for u in targets if self._online(u))
            pending = tuple(u for u in targets if u not in live)
            if targets:
                await conn.execute(
                    insert(target_t),
                    [
                        {"notice_id": notice_id, "to_user_id": u, "delivered": u in live}
                        for u in targets
                    ],
                )
            row = NoticeRow(notice_id, n.from_user_id, n.body_type, n.body, n.send_time)
            results.append(StoredNotice(row, live, pending))
        return results


@dataclass(slots=True, frozen=True)
class LoginIn:
    user_id: int
    # Called with the user's conversations at this point of the write stream; makes the
    # session visible to the writes queued after it, and returns how to take that back if the
    # transaction does not commit. None: the connection is gone.
    register: Callable[[list[ConvState]], Callable[[], None] | None]


@dataclass(slots=True, frozen=True)
class LoginSnapshot:
    # Each conversation's messages up to its last_seq here come from storage; later ones live.
    convs: list[ConvState]
    notices: list[NoticeRow]  # pending notices, now claimed by this login


PENDING = (
    select(
        target_t.c.to_user_id,
        target_t.c.notice_target_id,
        notice_t.c.notice_id,
        notice_t.c.from_user_id,
        notice_t.c.body_type,
        notice_t.c.body,
        notice_t.c.send_time,
    )
    .join(notice_t, notice_t.c.notice_id == target_t.c.notice_id)
    .where(
        target_t.c.to_user_id.in_(bindparam("users", expanding=True)),
        target_t.c.delivered == False,  # noqa: E712 - SQL expression
    )
    .order_by(target_t.c.notice_target_id)
    # Locked: two servers logging the same user in at once, or another node claiming one of
    # them (``storage.catchup.ClaimNotice``): one waits, then sees the targets the other
    # claimed as delivered (READ COMMITTED re-checks the row), so each notice is handed over
    # once. The rows are locked by the batch's ordered pass already (``locks.RowLocks``);
    # this clause covers a target stored since. (SQLite, one writer, has no such clause and
    # needs none.)
    .with_for_update()
)


class ClaimOnLogin:
    """Writer kind: the point in the write stream where a session comes online.

    A run of logins costs the same few queries as one (a login storm after a restart is
    thousands at once): who exists, everyone's conversations, everyone's pending notices."""

    def __init__(self, users: KnownUsers, tx: Transaction) -> None:
        self._users = users
        self._tx = tx

    def rows(self, items: Sequence[LoginIn], into: Rows) -> None:
        """Shared databases: the users' pending notice targets."""
        into.logins.update(item.user_id for item in items)

    async def run(
        self, conn: AsyncConnection, items: Sequence[LoginIn]
    ) -> list[LoginSnapshot | ImError]:
        user_ids = {item.user_id for item in items}
        known = await self._users.existing(conn, user_ids)
        convs = await conversations_of(conn, known)
        pending: dict[int, list[tuple[int, NoticeRow]]] = {u: [] for u in known}
        if known:
            for user_id, target_id, *notice in await conn.execute(
                PENDING, {"users": sorted(known)}
            ):
                pending[user_id].append((target_id, NoticeRow(*notice)))
        claimed: list[int] = []
        results: list[LoginSnapshot | ImError] = []
        for item in items:
            if item.user_id not in known:
                results.append(
                    ImError(
                        ErrorCode.UNAUTHORIZED, f"user {item.user_id} does not exist", close=True
                    )
                )
                continue
            mine = convs[item.user_id]
            undo = item.register(mine)
            if undo is None:
                results.append(LoginSnapshot(mine, []))
                continue
            # Its floors come from this transaction's reads: they must not outlive it.
            self._tx.on_discard(undo)
            # The first connection of the user to come online takes what is pending.
            notices, pending[item.user_id] = pending[item.user_id], []
            claimed.extend(target_id for target_id, _ in notices)
            results.append(LoginSnapshot(mine, [row for _, row in notices]))
        if claimed:
            await conn.execute(
                update(target_t)
                .where(target_t.c.notice_target_id.in_(claimed))
                .values(delivered=True)
            )
        return results
