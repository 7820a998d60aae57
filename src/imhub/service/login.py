"""Login, logout and heartbeat: a connection's life as a user's session.

Login is the one ordered step: the session joins the registry at a point of the write stream
(see ``storage.notices.ClaimOnLogin``), which also says how far each conversation has got.
Everything after the user's read position up to that point is written from storage, oldest
first (messages as notices, recalls and group events as themselves); live messages after it
wait in ``Session.held`` until that backlog is out, so each arrives once and in order.

The backlog is read from storage a bounded number of messages at a time (``history.read_size``),
and the next message is written only once the client has taken most of what was written
(``Outlet.drained``): a slow reader slows its own login down, and the server holds no more than
its byte limit queued for it.

A session lasts as long as its token: the login records the token's expiry on the session, and
the gateway's once-a-second sweep tells the client (401, "token expired") and closes it then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol import codec
from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.auth import TokenAuthority
from imhub.service.crossnode import CrossNode
from imhub.service.delivery import backlog_message, notice_message
from imhub.service.history import read_size
from imhub.service.limits import Limits
from imhub.service.reads import unread_list
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage.conversations import messages_between
from imhub.storage.notices import ClaimOnLogin, LoginIn
from imhub.storage.reads import ConvState
from imhub.storage.writer import BatchWriter

log = logging.getLogger(__name__)

HEARTBEAT_ANSWER = codec.encode(ImMsg(msg_type=MsgType.HEARTBEAT, code=ErrorCode.OK))


class LoginService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        registry: SessionRegistry,
        auth: TokenAuthority,
        claim: ClaimOnLogin,
        max_frame: int = 64 * 1024,
        cluster: CrossNode | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._registry = registry
        self._auth = auth
        self._claim = claim
        self._max_frame = max_frame  # the largest message storage can hold
        self._cluster = cluster  # None: one process
        self._limits = limits  # None: no limit of connections per user

    async def login(self, session: Session, msg: ImMsg) -> None:
        if session.user_id is not None:
            raise ImError(ErrorCode.CONFLICT, "already logged in on this connection")
        if not msg.token:
            raise ImError(ErrorCode.UNAUTHORIZED, "token is required", close=True)
        user_id, expires = self._auth.verify(msg.token)  # whether the user exists: the writer
        if self._limits is not None:
            self._uncount(session)  # a login that failed before (it stays counted once)
            if not self._limits.join_user(user_id):
                raise ImError(ErrorCode.TOO_MANY, "too many connections of this user", close=True)
            session.counted = user_id
        session.client_type = msg.from_client_type or 0
        session.expires = expires
        session.hold()
        cluster = self._cluster
        if cluster is not None:
            # Listening to the user's channel before the snapshot: see ``CrossNode``.
            cluster.watch(session)
            await cluster.before_login(session, user_id)

        def register(convs: list[ConvState]) -> Callable[[], None] | None:
            if session.closed:
                return None
            session.user_id = user_id
            for c in convs:
                session.given(conv_key(c.chat_id, c.team_id), c.last_seq)
            self._registry.add(session)
            return unregister

        def unregister() -> None:  # the transaction that registered it did not commit
            self._registry.remove(session)
            session.user_id = None
            session.floor.clear()

        try:
            snapshot = await self._writer.call(self._claim, LoginIn(user_id, register))
        except ImError:  # refused (an unknown user): it never joined, nothing was held for it
            session.release_held()
            session.expires = None
            self._uncount(session)
            raise
        except BaseException:
            session.close()
            raise
        try:
            if session.user_id is None:
                return  # the connection closed while logging in
            if cluster is not None:
                await cluster.logged_in(session, snapshot.convs)
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
                await _taken(session)
            session.release_held()
        except BaseException:
            # A login that failed half-way is not resumed: the client logs in again and gets
            # the backlog from storage. Closing also frees what was held for it.
            session.close()
            raise

    async def _write_backlog(self, session: Session, state: ConvState) -> None:
        conv = conv_key(state.chat_id, state.team_id)
        after = state.read_seq
        per_read = read_size(session.outlet.limit, self._max_frame)
        conn: AsyncConnection | None = None
        try:
            while after < state.last_seq and not session.closed:
                if conn is None:
                    conn = await self._engine.connect()
                page = await messages_between(conn, conv, after, state.last_seq, per_read)
                for row in page:
                    session.push(backlog_message(row))
                    waiting = session.outlet.drained()
                    if waiting is not None:
                        if conn is not None:  # a pooled connection is not for waiting with
                            await conn.close()
                            conn = None
                        await waiting
                if len(page) < per_read:
                    return
                after = page[-1].seq
        finally:
            if conn is not None:
                await conn.close()

    def logout(self, session: Session, msg: ImMsg) -> Coroutine[Any, Any, None] | None:
        """Answer, then close; sends taken before it are answered first (the connection is
        read no further meanwhile)."""
        waiting = session.inflight.all_answered() if session.inflight is not None else None
        if waiting is None:
            self._logged_out(session)
            return None
        return self._logout_after(session, waiting)

    async def _logout_after(self, session: Session, answered: Coroutine[Any, Any, None]) -> None:
        await answered
        self._logged_out(session)

    @staticmethod
    def _logged_out(session: Session) -> None:
        session.reply(ImMsg(msg_type=MsgType.LOGOUT, code=ErrorCode.OK))
        session.close()

    def heartbeat(self, session: Session, msg: ImMsg) -> None:
        if msg.msg_id_client is None:
            session.reply(HEARTBEAT_ANSWER)  # the common case, encoded once
        else:
            session.reply(ImMsg(msg_type=MsgType.HEARTBEAT, code=ErrorCode.OK))

    def closed(self, session: Session) -> None:
        """The connection is gone: its presence goes with it."""
        session.gone()
        self._registry.remove(session)
        self._uncount(session)
        if self._cluster is not None:
            self._cluster.closed(session)

    def _uncount(self, session: Session) -> None:
        if session.counted is not None and self._limits is not None:
            self._limits.leave_user(session.counted)
        session.counted = None


async def _taken(session: Session) -> None:
    """Back-pressure: wait while the client has not taken most of what it was written."""
    waiting = session.outlet.drained()
    if waiting is not None:
        await waiting
