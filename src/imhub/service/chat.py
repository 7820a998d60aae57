"""One-to-one chat: store first, answer the sender after the commit, then deliver.

Each online connection of the recipient that has entered the chat gets the message as
``chat`` (3); every other connection of the recipient gets it as ``notice`` (7). The sender's
other connections get the same copy, so a user's phone shows what their PC sent. A message
counts as read when the recipient had the chat open on some connection while it was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.outbound import person_message
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage import chats
from imhub.storage.chats import ChatRow, MsgRow, PersonMsgIn, StoredMsg
from imhub.storage.writer import BatchWriter

MAX_MSG_ID_CLIENT = 50


class ChatService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        registry: SessionRegistry,
        clock_ms: Callable[[], int],
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._registry = registry
        self._clock_ms = clock_ms
        self._store = chats.StorePersonMessages(registry.in_chat)
        self._reset = chats.ResetUnread()
        self._chats: dict[int, ChatRow] = {}

    def chat(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 3. Synchronous: the write is queued in arrival order."""
        assert session.user_id is not None
        mid = msg.msg_id_client
        if not mid or len(mid) > MAX_MSG_ID_CLIENT:
            raise ImError(
                ErrorCode.BAD_REQUEST, f"msgIdClient must be 1 to {MAX_MSG_ID_CLIENT} characters"
            )
        if msg.team_id:
            raise ImError(ErrorCode.BAD_REQUEST, "group chat is not available yet")
        if msg.to_user_id is None:
            raise ImError(ErrorCode.BAD_REQUEST, "toUserId is required", msg_id_client=mid)
        if msg.to_user_id == session.user_id:
            raise ImError(ErrorCode.BAD_REQUEST, "cannot chat with yourself", msg_id_client=mid)
        if msg.body is None:
            raise ImError(ErrorCode.BAD_REQUEST, "body is required", msg_id_client=mid)
        item = PersonMsgIn(
            from_user_id=session.user_id,
            to_user_id=msg.to_user_id,
            client_type=session.client_type,
            body_type=msg.body_type or 0,
            body=msg.body,
            voice_time=msg.time or 0,
            msg_id_client=mid,
            send_time=self._clock_ms(),
        )
        self._writer.submit(self._store, item, partial(self._stored, session, item))

    def _stored(self, session: Session, item: PersonMsgIn, result: StoredMsg | ImError) -> None:
        if isinstance(result, ImError):
            session.error(result.code, result.reason, item.msg_id_client)
            return
        session.reply(
            ImMsg(
                msg_type=MsgType.CHAT_ANSWER,
                code=ErrorCode.OK,
                chat_id=result.chat_id,
                to_user_id=item.to_user_id,
                msg_id_client=item.msg_id_client,
                msg_id_server=result.msg_id_server,
                send_time=result.send_time,
            )
        )
        if result.duplicate:
            return  # delivered when it was first stored
        row = MsgRow(
            result.msg_id_server,
            result.chat_id,
            item.from_user_id,
            item.to_user_id,
            item.client_type,
            item.body_type,
            item.body,
            item.voice_time,
            item.msg_id_client,
            item.send_time,
        )
        self.deliver(row, skip=session)

    def deliver(self, row: MsgRow, skip: Session | None = None) -> None:
        """Write a stored message to every connection of both users, each encoding done once."""
        as_chat: bytes | None = None
        as_notice: bytes | None = None
        for user_id in (row.to_user_id, row.from_user_id):
            for s in self._registry.sessions_of(user_id):
                if s is skip or row.msg_id_server <= s.backlog_upto:
                    continue
                if row.chat_id in s.entered:
                    as_chat = as_chat or codec.encode(person_message(MsgType.CHAT, row))
                    s.send(as_chat)
                else:
                    as_notice = as_notice or codec.encode(person_message(MsgType.NOTICE, row))
                    s.send(as_notice)

    async def chat_enter(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 5: show this chat here; its messages to this user become read."""
        assert session.user_id is not None
        chat = await self._member_chat(session.user_id, msg.chat_id)
        session.entered.add(chat.chat_id)
        await self._writer.call(self._reset, (session.user_id, chat))
        session.reply(ImMsg(msg_type=MsgType.CHAT_ENTER, code=ErrorCode.OK, chat_id=chat.chat_id))

    def chat_quit(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 6: messages of this chat reach this connection as notices again."""
        if msg.chat_id is None:
            raise ImError(ErrorCode.BAD_REQUEST, "chatId is required")
        session.entered.discard(msg.chat_id)
        session.reply(ImMsg(msg_type=MsgType.CHAT_QUIT, code=ErrorCode.OK, chat_id=msg.chat_id))

    async def _member_chat(self, user_id: int, chat_id: int | None) -> ChatRow:
        if chat_id is None:
            raise ImError(ErrorCode.BAD_REQUEST, "chatId is required")
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = await chats.get_chat(self._engine, chat_id)
            if chat is not None:
                if len(self._chats) > 100_000:
                    self._chats.clear()
                self._chats[chat_id] = chat
        if chat is None or chat.peer_of(user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no chat {chat_id} of yours")
        return chat
