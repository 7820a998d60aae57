"""Groups: the ``team`` row, one ``chat`` row per member (event_type 1), membership changes.

Every change is also an event in the group's stream (a ``team_msg`` row whose ``msg_type`` is
the operation), so members who were offline see it when they sync, in order with messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError, unknown_users
from imhub.storage.conversations import TEAM, MsgRow, Sequences, store_rows
from imhub.storage.models import chat_table, membership_table, team_table, users_table
from imhub.storage.staged import Staged, Transaction
from imhub.storage.users import existing_users
from imhub.storage.writer import each

if TYPE_CHECKING:
    from imhub.storage.locks import Rows

chat_t = chat_table
team_t = team_table
user_t = users_table
span_t = membership_table

MAX_MEMBERS = 20_000
BODY_TIPS = 7  # the seed's BodyType.tips, for the text of group events


@dataclass(slots=True, frozen=True)
class TeamInfo:
    team_id: int
    name: str
    owner: int
    members: frozenset[int]
    version: int = 0  # team.version when this was read: bumped by every membership change


class Teams:
    """Group membership, cached; loaded and changed inside the writer's transaction only, so
    the writer's checks and the cache always agree, and a change counts for readers outside
    the writer once its transaction committed (``staged.Staged``).

    With several writers on the database (``Sequences.shared``) another node may change a
    group: inside the writer a cached entry is used only if the team row's ``version``, read
    under the row's lock in this transaction, is still the one it was loaded at (else the
    members are read again, under that lock, so no change can slip in before the commit);
    outside the writer the committed rows are read every time."""

    def __init__(
        self, tx: Transaction, cache_max: int = 50_000, sequences: Sequences | None = None
    ) -> None:
        self._cache: Staged[int, TeamInfo | None] = Staged(tx, cache_max)
        self._seqs = sequences if sequences is not None and sequences.shared else None

    async def get(self, conn: AsyncConnection, team_id: int) -> TeamInfo | None:
        """Inside the writer: from the cache, loading it on a miss."""
        cache = self._cache
        if self._seqs is not None:
            locked = await self._seqs.team_version(conn, team_id)
            if locked is None or locked[1]:
                return None  # no such group, or dissolved
            if team_id in cache:
                info = cache[team_id]
                if info is not None and info.version == locked[0]:
                    return info
            info = cache[team_id] = await _load(conn, team_id)
            return info
        if team_id in cache:
            return cache[team_id]
        info = cache[team_id] = await _load(conn, team_id)
        return info

    async def read(self, engine: AsyncEngine, team_id: int) -> TeamInfo | None:
        """Outside the writer: the committed cache, or the committed rows (which do not enter
        the cache, so a read racing a change cannot put an old member list back)."""
        if self._seqs is None and self._cache.has_committed(team_id):
            return self._cache.committed(team_id)
        async with engine.connect() as conn:
            return await _load(conn, team_id)

    def put(self, info: TeamInfo) -> None:
        self._cache[info.team_id] = info

    def drop(self, team_id: int) -> None:
        self._cache[team_id] = None

    def forget(self, team_id: int | None = None) -> None:
        """Outside the writer: drop what is cached of one group (None: of every group), for a
        node told by the cluster that another changed it. Never needed for correctness (the
        version check above), it frees the memory of a stale entry."""
        self._cache.forget(team_id)


async def _load(conn: AsyncConnection, team_id: int) -> TeamInfo | None:
    row = (
        await conn.execute(
            select(team_t.c.team_name, team_t.c.team_admin, team_t.c.version).where(
                team_t.c.team_id == team_id,
                team_t.c.delete_flag == False,  # noqa: E712
            )
        )
    ).first()
    if row is None:
        return None
    members = await conn.execute(
        select(chat_t.c.to_user_id).where(
            chat_t.c.team_id == team_id,
            chat_t.c.event_type == TEAM,
            chat_t.c.delete_flag == False,  # noqa: E712
        )
    )
    return TeamInfo(team_id, row[0], row[1], frozenset(members.scalars()), int(row[2]))


@dataclass(slots=True, frozen=True)
class TeamOp:
    """One group operation by ``actor``; ``op`` is its protocol msgType (16 to 21)."""

    op: int
    actor: int
    send_time: int
    client_type: int = 5
    team_id: int = 0
    name: str = ""
    member_ids: tuple[int, ...] = ()


@dataclass(slots=True, frozen=True)
class TeamChanged:
    info: TeamInfo  # after the change (members empty when dissolved)
    event: MsgRow | None  # the event in the group's stream; None: nothing changed
    notify: frozenset[int] = frozenset()  # members before and after: who must hear of it
    affected: tuple[int, ...] = field(default=())


# Operation codes, equal to the protocol's msgTypes (protocol.messages.MsgType).
CREATE, ADD, REMOVE, LEAVE, RENAME, DISMISS = 16, 17, 18, 19, 20, 21


class ApplyTeamOps:
    """Writer kind: create, add, remove, leave, rename, dissolve; each also posts an event."""

    def __init__(self, teams: Teams, sequences: Sequences, max_members: int = MAX_MEMBERS) -> None:
        self._teams = teams
        self._seqs = sequences
        self.max_members = max_members  # --max-group

    def rows(self, items: Sequence[TeamOp], into: Rows) -> None:
        """Shared databases: the group's row, which holds its member rows (a new group's row
        is this transaction's own)."""
        into.convs.update(-op.team_id for op in items if op.op != CREATE and op.team_id)

    async def run(
        self, conn: AsyncConnection, items: Sequence[TeamOp]
    ) -> list[TeamChanged | ImError]:
        results = await each(items, partial(self._apply, conn))
        await self._seqs.flush(conn)
        return results

    async def _apply(self, conn: AsyncConnection, op: TeamOp) -> TeamChanged:
        names = await _names(conn, {op.actor, *op.member_ids})
        if op.actor not in names:
            raise ImError(ErrorCode.NOT_FOUND, f"user {op.actor} does not exist")
        if op.op == CREATE:
            return await self._create(conn, op, names)
        info = await self._teams.get(conn, op.team_id)
        if info is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no group {op.team_id}")
        if op.actor not in info.members:
            raise ImError(ErrorCode.FORBIDDEN, f"you are not a member of group {op.team_id}")
        actor = names[op.actor]
        if op.op in (ADD, REMOVE, DISMISS) and op.actor != info.owner:
            raise ImError(ErrorCode.FORBIDDEN, "only the group's owner may do that")
        # Every refusal is raised before anything is written (``writer.each``).
        if op.op == ADD:
            unknown = set(op.member_ids) - names.keys()
            if unknown:
                raise ImError(ErrorCode.NOT_FOUND, unknown_users(unknown))
            new = tuple(u for u in dict.fromkeys(op.member_ids) if u not in info.members)
            if len(info.members) + len(new) > self.max_members:
                raise ImError(ErrorCode.CONFLICT, f"group full: at most {self.max_members} members")
            if not new:
                return TeamChanged(info, None)  # all of them are members already
            seq = await self._seqs.next(conn, -info.team_id)
            await _join(conn, info.team_id, new, seq)
            after = replace(info, members=info.members | set(new))
            text = f"{actor} added {_list(names, new)}"
            return await self._event(conn, op, seq, info, after, new, text)
        if op.op == REMOVE:
            gone = tuple(u for u in dict.fromkeys(op.member_ids) if u in info.members)
            if info.owner in gone:
                raise ImError(
                    ErrorCode.BAD_REQUEST, "the owner cannot be removed; dissolve instead"
                )
            if not gone:
                return TeamChanged(info, None)  # none of them is a member
            seq = await self._seqs.next(conn, -info.team_id)
            await _leave(conn, info.team_id, gone, seq)
            after = replace(info, members=info.members - set(gone))
            text = f"{actor} removed {_list(names, gone)}"
            return await self._event(conn, op, seq, info, after, gone, text)
        if op.op == LEAVE:
            if op.actor == info.owner:
                raise ImError(ErrorCode.CONFLICT, "the owner cannot leave; dissolve the group")
            seq = await self._seqs.next(conn, -info.team_id)
            await _leave(conn, info.team_id, (op.actor,), seq)
            after = replace(info, members=info.members - {op.actor})
            return await self._event(conn, op, seq, info, after, (op.actor,), f"{actor} left")
        if op.op == RENAME:
            name = _valid_name(op.name)
            if name == info.name:
                return TeamChanged(info, None)
            seq = await self._seqs.next(conn, -info.team_id)
            await conn.execute(
                update(team_t).where(team_t.c.team_id == info.team_id).values(team_name=name)
            )
            after = replace(info, name=name)
            text = f"{actor} renamed the group {name}"
            return await self._event(conn, op, seq, info, after, (), text)
        if op.op == DISMISS:
            seq = await self._seqs.next(conn, -info.team_id)
            await conn.execute(
                update(team_t).where(team_t.c.team_id == info.team_id).values(delete_flag=True)
            )
            await _leave(conn, info.team_id, tuple(info.members), seq)
            after = replace(info, members=frozenset())
            text = f"{actor} dissolved the group"
            changed = await self._event(conn, op, seq, info, after, (), text)
            self._teams.drop(info.team_id)
            return changed
        raise ImError(ErrorCode.BAD_REQUEST, f"unknown group operation {op.op}")

    async def _create(
        self, conn: AsyncConnection, op: TeamOp, names: dict[int, str]
    ) -> TeamChanged:
        name = _valid_name(op.name)
        members = tuple(dict.fromkeys((op.actor, *op.member_ids)))
        unknown = set(members) - names.keys()
        if unknown:
            raise ImError(ErrorCode.NOT_FOUND, unknown_users(unknown))
        if len(members) > self.max_members:
            raise ImError(ErrorCode.BAD_REQUEST, f"a group has at most {self.max_members} members")
        team_id = (
            await conn.execute(
                insert(team_t)
                .values(team_name=name, team_admin=op.actor, team_admin_name=names[op.actor])
                .returning(team_t.c.team_id)
            )
        ).scalar_one()
        self._seqs.created(-team_id)
        seq = await self._seqs.next(conn, -team_id)
        await _join(conn, team_id, members, seq)
        info = TeamInfo(team_id, name, op.actor, frozenset(members))
        before = TeamInfo(team_id, name, op.actor, frozenset())
        text = f"{names[op.actor]} created {name}"
        op = replace(op, team_id=team_id)
        return await self._event(conn, op, seq, before, info, members, text)

    async def _event(
        self,
        conn: AsyncConnection,
        op: TeamOp,
        seq: int,
        before: TeamInfo,
        after: TeamInfo,
        affected: tuple[int, ...],
        text: str,
    ) -> TeamChanged:
        mid = f"team-{op.op}-{after.team_id}-{seq}"  # the server's, apart from clients' ids
        if op.op != CREATE:
            # Every change moves the version: another writer's cached member list of this
            # group is then read again (``Teams.get``).
            await conn.execute(
                update(team_t)
                .where(team_t.c.team_id == after.team_id)
                .values(version=team_t.c.version + 1)
            )
            after = replace(after, version=before.version + 1)
        (event,) = await store_rows(
            conn,
            [
                MsgRow(
                    chat_id=0,
                    team_id=after.team_id,
                    seq=seq,
                    msg_id_server=0,
                    msg_type=op.op,
                    ref_seq=0,
                    from_user_id=op.actor,
                    to_user_id=0,
                    client_type=op.client_type,
                    body_type=BODY_TIPS,
                    body=text,
                    voice_time=0,
                    msg_id_client=mid,
                    send_time=op.send_time,
                    recalled=False,
                )
            ],
        )
        if after.members:
            self._teams.put(after)
        return TeamChanged(after, event, before.members | after.members, affected)


def _valid_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 50:
        raise ImError(ErrorCode.BAD_REQUEST, "a group name has 1 to 50 characters")
    return name


def _list(names: dict[int, str], ids: tuple[int, ...]) -> str:
    return ", ".join(names.get(u, str(u)) for u in ids) or "nobody"


async def _names(conn: AsyncConnection, user_ids: set[int]) -> dict[int, str]:
    existing = await existing_users(conn, user_ids)
    if not existing:
        return {}
    rows = await conn.execute(
        select(user_t.c.user_id, user_t.c.username).where(user_t.c.user_id.in_(existing))
    )
    return {int(u): str(n) for u, n in rows}


async def _join(
    conn: AsyncConnection, team_id: int, user_ids: tuple[int, ...], event_seq: int
) -> None:
    """Add member rows, reviving those of earlier members. ``event_seq`` is the seq of the
    event that makes them members (create or add): it is where their membership starts, and
    their read position starts just before it, so their backlog begins with that event and
    holds no older history. Each membership is also kept apart (``team_membership``)."""
    if not user_ids:
        return
    old = set(
        (
            await conn.execute(select(chat_t.c.to_user_id).where(*_member_rows(team_id, user_ids)))
        ).scalars()
    )
    start = {"to_read_seq": event_seq - 1, "join_seq": event_seq, "leave_seq": 0}
    if old:
        await conn.execute(
            update(chat_t).where(*_member_rows(team_id, old)).values(delete_flag=False, **start)
        )
    new = [u for u in user_ids if u not in old]
    if new:
        await conn.execute(
            insert(chat_t),
            [
                {"event_type": TEAM, "from_user_id": 0, "to_user_id": u, "team_id": team_id} | start
                for u in new
            ],
        )
    await conn.execute(
        insert(span_t),
        [{"team_id": team_id, "user_id": u, "join_seq": event_seq} for u in user_ids],
    )


async def _leave(
    conn: AsyncConnection, team_id: int, user_ids: tuple[int, ...], event_seq: int
) -> None:
    """End memberships at the event ``event_seq`` (remove, leave, dissolve): the former
    members still get everything up to and including it, and nothing after."""
    if user_ids:
        await conn.execute(
            update(chat_t)
            .where(*_member_rows(team_id, user_ids))
            .values(delete_flag=True, leave_seq=event_seq)
        )
        await conn.execute(
            update(span_t)
            .where(
                span_t.c.team_id == team_id,
                span_t.c.user_id.in_(list(user_ids)),
                span_t.c.leave_seq == 0,
            )
            .values(leave_seq=event_seq)
        )


async def former_member(conn: AsyncConnection, team_id: int, user_id: int) -> int | None:
    """The seq of the event that ended ``user_id``'s membership of a group (the last one they
    may see), or None when they are a member or never were one (or left before imhub kept
    where)."""
    found = (
        await conn.execute(
            select(chat_t.c.leave_seq).where(
                *_member_rows(team_id, (user_id,)),
                chat_t.c.delete_flag == True,  # noqa: E712
                chat_t.c.leave_seq > 0,
            )
        )
    ).scalar()
    return None if found is None else int(found)


def _member_rows(team_id: int, user_ids: Iterable[int]) -> tuple[Any, ...]:
    """WHERE clauses for the member rows of ``user_ids`` in a group, present or departed."""
    return (
        chat_t.c.team_id == team_id,
        chat_t.c.event_type == TEAM,
        chat_t.c.to_user_id.in_(list(user_ids)),
    )
