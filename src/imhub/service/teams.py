"""Groups: create, add and remove members (owner only), leave, rename, dissolve (owner only).

The same methods serve the protocol (the logged-in user acts) and the HTTP API (a backend
names the acting user); the rules are the same. Every change is an event in the group's
stream, delivered to everyone who was or is a member, with the affected ``memberIds`` and the
group's name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ClientType, ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.delivery import Delivery, message
from imhub.service.sessions import Session
from imhub.storage import users
from imhub.storage.chats import EnsurePairs
from imhub.storage.teams import ApplyTeamOps, TeamChanged, TeamOp
from imhub.storage.writer import BatchWriter

OPS = (
    MsgType.TEAM_CREATE,
    MsgType.TEAM_ADD,
    MsgType.TEAM_REMOVE,
    MsgType.TEAM_LEAVE,
    MsgType.TEAM_RENAME,
    MsgType.TEAM_DISMISS,
)


class TeamService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        membership: Membership,
        delivery: Delivery,
        apply_ops: ApplyTeamOps,
        ensure_pairs: EnsurePairs,
        clock_ms: Callable[[], int],
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._membership = membership
        self._delivery = delivery
        self._apply = apply_ops
        self._pairs = ensure_pairs
        self._clock_ms = clock_ms

    async def change(
        self,
        op: MsgType,
        actor: int,
        *,
        team_id: int = 0,
        name: str = "",
        member_ids: list[int] | None = None,
        client_type: int = ClientType.REST,
        skip: Session | None = None,
    ) -> ImMsg:
        """Apply one group operation for ``actor``; returns the answer. Raises ``ImError``."""
        if op not in OPS:
            raise ImError(ErrorCode.BAD_REQUEST, f"{op} is not a group operation")
        if op != MsgType.TEAM_CREATE and not team_id:
            raise ImError(ErrorCode.BAD_REQUEST, "teamId is required")
        members = tuple(dict.fromkeys(member_ids or ()))
        if op in (MsgType.TEAM_ADD, MsgType.TEAM_REMOVE) and not members:
            raise ImError(ErrorCode.BAD_REQUEST, "memberIds is required")
        # Over the group size: refused before any work (storage checks again, against the
        # members the group has when the change is applied).
        most = self._apply.max_members
        if op == MsgType.TEAM_CREATE and len({actor, *members}) > most:
            raise ImError(ErrorCode.BAD_REQUEST, f"a group has at most {most} members")
        if op == MsgType.TEAM_ADD and len(members) >= most:
            raise ImError(ErrorCode.CONFLICT, f"group full: at most {most} members")
        if op == MsgType.TEAM_CREATE:
            others = [u for u in members if u != actor]
            if len(others) == 1:  # as the seed's createTeamChat: a pair is a one-to-one chat
                return await self._one_to_one(actor, others[0])
        item = TeamOp(
            op=op,
            actor=actor,
            send_time=self._clock_ms(),
            client_type=client_type,
            team_id=team_id,
            name=name,
            member_ids=members,
        )
        changed = await self._writer.call(self._apply, item, partial(self._announce, skip))
        info = changed.info
        return ImMsg(
            msg_type=op,
            code=ErrorCode.OK,
            team_id=info.team_id,
            team_name=info.name,
            owner_id=info.owner,
            member_ids=sorted(info.members),
            seq=changed.event.seq if changed.event else None,  # None: nothing changed
        )

    def _announce(self, skip: Session | None, changed: TeamChanged) -> None:
        if changed.event is None:
            return
        event = message(changed.event)
        event.team_name = changed.info.name
        event.member_ids = list(changed.affected)
        self._delivery.row(changed.event, changed.notify, skip=skip, extra=event)

    async def _one_to_one(self, actor: int, other: int) -> ImMsg:
        if await users.get_user(self._engine, other) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {other} does not exist")
        chat_id = await self._writer.call(self._pairs, (actor, other))
        return ImMsg(
            msg_type=MsgType.TEAM_CREATE, code=ErrorCode.OK, chat_id=chat_id, to_user_id=other
        )

    async def info(self, user_id: int, team_id: int | None) -> ImMsg:
        if not team_id:
            raise ImError(ErrorCode.BAD_REQUEST, "teamId is required")
        info = await self._membership.team(user_id, team_id)
        return ImMsg(
            msg_type=MsgType.TEAM_INFO,
            code=ErrorCode.OK,
            team_id=info.team_id,
            team_name=info.name,
            owner_id=info.owner,
            member_ids=sorted(info.members),
        )

    async def handle(self, session: Session, msg: ImMsg) -> None:
        """Handle msgTypes 16 to 22 from a connection: the logged-in user acts."""
        assert session.user_id is not None
        if msg.msg_type == MsgType.TEAM_INFO:
            session.reply(await self.info(session.user_id, msg.team_id))
            return
        answer = await self.change(
            MsgType(msg.msg_type),
            session.user_id,
            team_id=msg.team_id or 0,
            name=msg.team_name or "",
            member_ids=msg.member_ids,
            client_type=session.client_type,
            skip=session,
        )
        session.reply(answer)
