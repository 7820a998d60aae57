"""Notices from business backends (HTTP) and from users: stored, then pushed once per target.

A backend names the targets, or a group (its members when the notice is stored), or everyone
online (those online at the notice's point in the write stream: nobody offline gets it later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import BodyType, ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.crossnode import CrossNode
from imhub.service.delivery import notice_message
from imhub.service.presence import PresenceService
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage.notices import NoticeIn, StoredNotice, StoreNotices
from imhub.storage.writer import BatchWriter

MAX_TARGETS = 10_000


class NoticeService:
    def __init__(
        self,
        writer: BatchWriter,
        registry: SessionRegistry,
        clock_ms: Callable[[], int],
        membership: Membership,
        cluster: CrossNode | None = None,
        presence: PresenceService | None = None,
    ) -> None:
        self._cluster = cluster  # None: one process
        self._presence = presence  # who is online anywhere, for a notice to everyone online
        self._writer = writer
        self._registry = registry
        self._clock_ms = clock_ms
        self._membership = membership
        self._store = StoreNotices(registry.online)

    async def notify(
        self, from_user_id: int, to_user_ids: list[int], body_type: int, body: str
    ) -> StoredNotice:
        """Store a notice for every target and push it to those online; raises ``ImError``."""
        targets = tuple(dict.fromkeys(to_user_ids))
        if not targets or len(targets) > MAX_TARGETS:
            raise ImError(ErrorCode.BAD_REQUEST, f"give 1 to {MAX_TARGETS} target users")
        return await self._submit(
            NoticeIn(from_user_id, body_type, body, self._clock_ms(), targets)
        )

    async def to_team(
        self, team_id: int, from_user_id: int, body_type: int, body: str
    ) -> StoredNotice:
        """A notice to every member of a group (404: no such group)."""
        members = await self._membership.members(team_id)
        targets = tuple(sorted(members))
        item = NoticeIn(from_user_id, body_type, body, self._clock_ms(), targets, strict=False)
        return await self._submit(item)

    async def to_online(self, from_user_id: int, body_type: int, body: str) -> StoredNotice:
        """A notice to every user online (it waits for nobody). In a cluster, the users online
        anywhere by the cluster's presence; one who goes away before their node claims it gets
        it at their next login."""
        if self._cluster is not None and self._presence is not None:
            targets = tuple(await self._presence.everyone())
            only_online = False
        else:
            targets, only_online = tuple(sorted(self._registry.user_ids())), True
        item = NoticeIn(
            from_user_id,
            body_type,
            body,
            self._clock_ms(),
            targets,
            strict=False,
            online_only=only_online,
        )
        return await self._submit(item)

    async def _submit(self, item: NoticeIn) -> StoredNotice:
        fut: asyncio.Future[StoredNotice | ImError] = asyncio.get_running_loop().create_future()

        def stored(result: StoredNotice | ImError) -> None:
            if isinstance(result, StoredNotice):
                self._push(result)  # in the writer's order, before any later login claims
            if not fut.done():
                fut.set_result(result)

        self._writer.submit(self._store, item, stored)
        result = await fut
        if isinstance(result, ImError):
            raise result
        return result

    def _push(self, stored: StoredNotice) -> None:
        payload = codec.encode(notice_message(stored.notice))
        for user_id in stored.live:
            for s in self._registry.sessions_of(user_id):
                s.send(payload)
        if self._cluster is not None:
            # Delivered here: the same users' connections on other nodes get it too.
            self._cluster.send(payload, stored.live)
            # Exactly one node hands each of the others over: see ``CrossNode.on_news``.
            self._cluster.notice_pending(stored.notice, stored.pending)

    async def from_client(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 7 sent by a client: a notice to ``toUserId``."""
        assert session.user_id is not None
        if msg.to_user_id is None or msg.body is None:
            raise ImError(
                ErrorCode.BAD_REQUEST,
                "toUserId and body are required",
                msg_id_client=msg.msg_id_client,
            )
        body_type = BodyType.NOTIFICATION if msg.body_type is None else msg.body_type
        try:
            stored = await self.notify(session.user_id, [msg.to_user_id], body_type, msg.body)
        except ImError as exc:
            exc.msg_id_client = msg.msg_id_client
            raise
        session.reply(
            ImMsg(
                msg_type=MsgType.NOTICE,
                code=ErrorCode.OK,
                notice_id=stored.notice.notice_id,
                msg_id_client=msg.msg_id_client,
                send_time=stored.notice.send_time,
            )
        )
