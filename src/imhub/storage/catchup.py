"""What a cluster node reads to catch a connection up: a group member's memberships, the
newest seq of conversations, the claim of a pending notice by the node that has its target
online (``service.crossnode``), and after a gap in the bus what it may have missed hearing:
which of its users were deleted, and their pending notices."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.errors import ImError
from imhub.storage.conversations import chat_t, team_t
from imhub.storage.models import membership_table, notice_target_table, users_table
from imhub.storage.notices import PENDING, NoticeRow

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

target_t = notice_target_table
span_t = membership_table


async def member_spans(
    conn: AsyncConnection, team_id: int, user_id: int, after: int = 0
) -> list[tuple[int, int]]:
    """A user's memberships of a group that reach past ``after``, oldest first: (join_seq,
    leave_seq or 0 while it lasts), each seen inclusive of both events; [] when none does
    (never a member, or only before ``after``)."""
    rows = await conn.execute(
        select(span_t.c.join_seq, span_t.c.leave_seq)
        .where(
            span_t.c.team_id == team_id,
            span_t.c.user_id == user_id,
            or_(span_t.c.leave_seq == 0, span_t.c.leave_seq > after),
        )
        .order_by(span_t.c.join_seq)
    )
    return [(int(j), int(e)) for j, e in rows]


async def last_seqs(conn: AsyncConnection, convs: Collection[int]) -> dict[int, int]:
    """The newest seq of each conversation (a group's key is ``-team_id``)."""
    found: dict[int, int] = {}
    teams = [-c for c in convs if c < 0]
    chats = [c for c in convs if c > 0]
    if teams:
        rows = await conn.execute(
            select(team_t.c.team_id, team_t.c.last_seq).where(team_t.c.team_id.in_(teams))
        )
        found.update((-int(t), int(s)) for t, s in rows)
    if chats:
        rows = await conn.execute(
            select(chat_t.c.chat_id, chat_t.c.last_seq).where(chat_t.c.chat_id.in_(chats))
        )
        found.update((int(c), int(s)) for c, s in rows)
    return found


@dataclass(slots=True, frozen=True)
class ClaimIn:
    notice_id: int
    user_id: int


class ClaimNotice:
    """Writer kind: mark one target of a notice delivered, if nobody did; True when this node
    did it (and must write the notice), False when a login or another node was first. The
    conditional UPDATE takes the row's lock: of two claims only one sees it pending."""

    def rows(self, items: Sequence[ClaimIn], into: Rows) -> None:
        into.claims.update((item.notice_id, item.user_id) for item in items)

    async def run(self, conn: AsyncConnection, items: Sequence[ClaimIn]) -> list[bool | ImError]:
        results: list[bool | ImError] = []
        for item in items:
            done = await conn.execute(
                update(target_t)
                .where(
                    and_(
                        target_t.c.notice_id == item.notice_id,
                        target_t.c.to_user_id == item.user_id,
                        target_t.c.delivered == False,  # noqa: E712 - SQL expression
                    )
                )
                .values(delivered=True)
            )
            results.append(done.rowcount > 0)
        return results


async def deleted_among(conn: AsyncConnection, user_ids: Collection[int]) -> set[int]:
    """Which of ``user_ids`` are deleted (or gone): one query, however many."""
    if not user_ids:
        return set()
    rows = await conn.execute(
        select(users_table.c.user_id).where(
            users_table.c.user_id.in_(sorted(user_ids)),
            users_table.c.delete_flag == False,  # noqa: E712 - SQL expression
        )
    )
    return set(user_ids) - {int(u) for u in rows.scalars()}


class ClaimPending:
    """Writer kind: the notices still pending for a user online on this node (their news was
    lost with a gap in the bus), marked delivered; this node writes them. The rows are
    locked as at a login (``storage.notices.PENDING``): each is handed over once."""

    async def run(
        self, conn: AsyncConnection, items: Sequence[int]
    ) -> list[list[NoticeRow] | ImError]:
        found: dict[int, list[tuple[int, NoticeRow]]] = {u: [] for u in items}
        for user_id, target_id, *notice in await conn.execute(PENDING, {"users": sorted(found)}):
            found[user_id].append((target_id, NoticeRow(*notice)))
        claimed = [t for rows in found.values() for t, _ in rows]
        if claimed:
            await conn.execute(
                update(target_t)
                .where(target_t.c.notice_target_id.in_(claimed))
                .values(delivered=True)
            )
        results: list[list[NoticeRow] | ImError] = []
        for user_id in items:
            rows, found[user_id] = found[user_id], []  # a user twice in a batch: once
            results.append([row for _, row in rows])
        return results
