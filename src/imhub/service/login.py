"""Login, logout, heartbeat and unread counts: a connection's life as a user's session.

Login is the one ordered step: the session joins the registry at a point of the write stream
(see ``storage.notices.ClaimOnLogin``). Unread messages stored before that point are written
from storage, oldest first; live messages after it wait in ``Session.held`` until the backlog
is out, so each message reaches the connection once and in order.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType, UnreadChat
from imhub.service.auth import TokenAuthority
from imhub.service.outbound import notice_message, person_message
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage import chats, users
from imhub.storage.notices import ClaimOnLogin, LoginIn
from imhub.storage.writer import BatchWriter

BACKLOG_PAGE = 500


class LoginService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        registry: SessionRegistry,
        auth: TokenAuthority,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._registry = registry
        self._auth = auth
        self._claim = ClaimOnLogin()

    async def login(self, session: Session, msg: ImMsg) -> None:
        if session.user_id is not None:
            raise ImError(ErrorCode.CONFLICT, "already logged in on this connection")
        if not msg.token:
            raise ImError(ErrorCode.UNAUTHORIZED, "token is required", close=True)
        user_id = self._auth.verify(msg.token)
        if await users.get_user(self._engine, user_id) is None:
            raise ImError(ErrorCode.UNAUTHORIZED, f"user {user_id} does not exist", close=True)
        session.client_type = msg.from_client_type or 0
        session.held = []

        def register(last_msg_id: int) -> bool:
            if session.closed:
                return False
            session.user_id = user_id
            session.backlog_upto = last_msg_id
            self._registry.add(session)
            return True

        try:
            snapshot = await self._writer.call(self._claim, LoginIn(user_id, register))
            if session.user_id is None:
                return  # the connection closed while logging in
            unread = await self.unread(user_id)
            session.reply(
                ImMsg(msg_type=MsgType.LOGIN, code=ErrorCode.OK, user_id=user_id, unread=unread)
            )
            await self._write_backlog(session, user_id, snapshot.last_msg_id)
            for notice in snapshot.notices:
                session.reply(notice_message(notice))
            session.release_held()
        except BaseException:
            # A login that failed half-way is not resumed: the client logs in again and gets
            # the backlog from storage. Closing also frees what was held for it.
            session.close()
            raise

    async def _write_backlog(self, session: Session, user_id: int, upto: int) -> None:
        after = 0
        while not session.closed:
            page = await chats.unread_messages(self._engine, user_id, after, upto, BACKLOG_PAGE)
            for row in page:
                session.reply(person_message(MsgType.NOTICE, row))
            if len(page) < BACKLOG_PAGE:
                return
            after = page[-1].msg_id_server

    async def unread(self, user_id: int) -> list[UnreadChat]:
        return [
            UnreadChat(chat_id=c, peer_user_id=peer, count=n)
            for c, peer, n in await chats.unread_counts(self._engine, user_id)
        ]

    async def unread_request(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 9: the user's unread count of every chat that has one."""
        assert session.user_id is not None
        unread = await self.unread(session.user_id)
        session.reply(ImMsg(msg_type=MsgType.UNREAD, code=ErrorCode.OK, unread=unread))

    def logout(self, session: Session, msg: ImMsg) -> None:
        session.reply(ImMsg(msg_type=MsgType.LOGOUT, code=ErrorCode.OK))
        session.close()

    def heartbeat(self, session: Session, msg: ImMsg) -> None:
        session.reply(HEARTBEAT_ANSWER)

    def closed(self, session: Session) -> None:
        """The connection is gone: its presence goes with it."""
        session.closed = True
        self._registry.remove(session)


HEARTBEAT_ANSWER = codec.encode(ImMsg(msg_type=MsgType.HEARTBEAT, code=ErrorCode.OK))
