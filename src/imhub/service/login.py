"""Login, logout and heartbeat: a connection's life as a user's session.

Login is the one ordered step: the session joins the registry at a point of the write stream
(see ``storage.notices.ClaimOnLogin``), which also says how far each conversation has got.
Everything after the user's read position up to that point is written from storage, oldest
first (messages as notices, recalls and group events as themselves); live messages after it
wait in ``Session.held`` until that backlog is out, so each arrives once and in order.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol import codec
from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.auth import TokenAuthority
from imhub.service.delivery import backlog_message, notice_message
from imhub.service.reads import unread_list
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage.conversations import messages_between
from imhub.storage.notices import ClaimOnLogin, LoginIn
from imhub.storage.reads import ConvState
from imhub.storage.users import KnownUsers
from imhub.storage.writer import BatchWriter

BACKLOG_PAGE = 500
HEARTBEAT_ANSWER = codec.encode(ImMsg(msg_type=MsgType.HEARTBEAT, code=ErrorCode.OK))


class LoginService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        registry: SessionRegistry,
        auth: TokenAuthority,
        known_users: KnownUsers,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._registry = registry
        self._auth = auth
        self._claim = ClaimOnLogin(known_users)

    async def login(self, session: Session, msg: ImMsg) -> None:
        if session.user_id is not None:
            raise ImError(ErrorCode.CONFLICT, "already logged in on this connection")
        if not msg.token:
            raise ImError(ErrorCode.UNAUTHORIZED, "token is required", close=True)
        user_id = self._auth.verify(msg.token)  # whether the user exists, the writer checks
        session.client_type = msg.from_client_type or 0
        session.hold()

        def register(convs: list[ConvState]) -> bool:
            if session.closed:
                return False
            session.user_id = user_id
            for c in convs:
                session.given(conv_key(c.chat_id, c.team_id), c.last_seq)
            self._registry.add(session)
            return True

        try:
            snapshot = await self._writer.call(self._claim, LoginIn(user_id, register))
        except ImError:  # refused (an unknown user): it never joined, nothing was held for it
            session.release_held()
            raise
        except BaseException:
            session.close()
            raise
        try:
            if session.user_id is None:
                return  # the connection closed while logging in
            session.reply(
                ImMsg(
                    msg_type=MsgType.LOGIN,
                    code=ErrorCode.OK,
                    user_id=user_id,
                    unread=unread_list(snapshot.convs),
                )
            )
            if msg.backlog is not False:  # a client that syncs by itself asks for none
                for conv in snapshot.convs:
                    await self._write_backlog(session, conv)
            for notice in snapshot.notices:
                session.push(notice_message(notice))
            session.release_held()
        except BaseException:
            # A login that failed half-way is not resumed: the client logs in again and gets
            # the backlog from storage. Closing also frees what was held for it.
            session.close()
            raise

    async def _write_backlog(self, session: Session, state: ConvState) -> None:
        conv = conv_key(state.chat_id, state.team_id)
        after = state.read_seq
        async with self._engine.connect() as conn:
            while after < state.last_seq and not session.closed:
                page = await messages_between(conn, conv, after, state.last_seq, BACKLOG_PAGE)
                for row in page:
                    session.push(backlog_message(row))
                if len(page) < BACKLOG_PAGE:
                    return
                after = page[-1].seq

    def logout(self, session: Session, msg: ImMsg) -> None:
        session.reply(ImMsg(msg_type=MsgType.LOGOUT, code=ErrorCode.OK))
        session.close()

    def heartbeat(self, session: Session, msg: ImMsg) -> None:
        session.reply(HEARTBEAT_ANSWER)

    def closed(self, session: Session) -> None:
        """The connection is gone: its presence goes with it."""
        session.closed = True
        self._registry.remove(session)
