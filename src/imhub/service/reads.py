"""Read state: chat_enter / chat_quit, "read up to", receipts, unread counts, conversations.

A read position moves only forward; each move is announced to the reader's other connections
(their badges clear) and, in a one-to-one chat, to the other user (a read receipt). Who has
read a group message is answered on request, from the members' positions.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.conversation import conv_ids, conv_key
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import Conv, ImMsg, MsgType, UnreadChat
from imhub.service.chat import ChatService
from imhub.service.conversations import Membership
from imhub.service.delivery import Delivery
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage import reads
from imhub.storage.reads import ConvState, MoveReads, ReadIn
from imhub.storage.writer import BatchWriter


def addressed(msg: ImMsg, conv: int) -> ImMsg:
    """``msg`` with the ``chatId`` or ``teamId`` of a conversation."""
    chat_id, team_id = conv_ids(conv)
    msg.chat_id, msg.team_id = chat_id or None, team_id or None
    return msg


def unread_list(states: list[ConvState]) -> list[UnreadChat]:
    return [
        UnreadChat(
            chat_id=s.chat_id or None,
            team_id=s.team_id or None,
            peer_user_id=s.peer_user_id or None,
            count=s.unread,
        )
        for s in states
        if s.unread
    ]


def conv_list(states: list[ConvState]) -> list[Conv]:
    return [
        Conv(
            chat_id=s.chat_id or None,
            team_id=s.team_id or None,
            peer_user_id=s.peer_user_id or None,
            team_name=s.team_name or None,
            last_seq=s.last_seq,
            read_seq=s.read_seq,
            peer_read_seq=s.peer_read_seq if s.chat_id else None,
            unread=s.unread,
            left=s.left or None,
            join_seq=s.join_seq or None,
        )
        for s in states
    ]


class ReadService:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: BatchWriter,
        membership: Membership,
        delivery: Delivery,
        chat: ChatService,
        move_reads: MoveReads,
        registry: SessionRegistry,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._membership = membership
        self._delivery = delivery
        self._chat = chat
        self._move = move_reads
        self._registry = registry

    async def chat_enter(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 5: show this conversation here and read everything in it."""
        assert session.user_id is not None
        conv, upto = await self._membership.visible(session.user_id, msg)
        self._registry.enter(session, conv)
        seq = await self._read(session, conv, None, upto)
        session.reply(
            addressed(ImMsg(msg_type=MsgType.CHAT_ENTER, code=ErrorCode.OK, seq=seq), conv)
        )

    def chat_quit(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 6: messages of this conversation reach this connection as notices."""
        conv = conv_key(msg.chat_id, msg.team_id)
        if not conv:
            raise ImError(ErrorCode.BAD_REQUEST, "chatId or teamId is required")
        self._registry.quit(session, conv)
        session.reply(addressed(ImMsg(msg_type=MsgType.CHAT_QUIT, code=ErrorCode.OK), conv))

    async def read(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 12: "I have read up to ``seq``" without entering the conversation."""
        assert session.user_id is not None
        conv, upto = await self._membership.visible(session.user_id, msg)
        if msg.seq is None:
            raise ImError(ErrorCode.BAD_REQUEST, "seq is required")
        seq = await self._read(session, conv, msg.seq, upto)
        session.reply(addressed(ImMsg(msg_type=MsgType.READ, code=ErrorCode.OK, seq=seq), conv))

    async def _read(
        self, session: Session, conv: int, upto_seq: int | None, upto: int | None = None
    ) -> int:
        """Move the user's read position to ``upto_seq`` (None: the newest), never past
        ``upto`` (a former member's last visible seq), and announce it if it moved."""
        assert session.user_id is not None
        user_id = session.user_id
        was, seq = await self._writer.call(self._move, ReadIn(user_id, conv, upto_seq, upto))
        if seq == was:
            return seq  # nothing moved: nothing to tell anyone
        peer = await self._membership.peer(user_id, conv)
        if peer is None:
            self._delivery.send(
                addressed(ImMsg(msg_type=MsgType.READ, from_user_id=user_id, seq=seq), conv),
                [user_id],
                skip=session,
            )
        else:
            self._chat.receipt(conv, user_id, seq, {user_id, peer}, skip=session)
        return seq

    async def receipts(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 13: how many (and, with ``withReaders``, which) members have read
        message ``seq``: the seed's ``read_num``, derived from read positions."""
        assert session.user_id is not None
        conv, upto = await self._membership.visible(session.user_id, msg)
        if msg.seq is None:
            raise ImError(ErrorCode.BAD_REQUEST, "seq is required")
        if upto is not None and msg.seq > upto:
            raise ImError(ErrorCode.FORBIDDEN, "that message came after you left the group")
        async with self._engine.connect() as conn:
            readers = await reads.receipt(conn, conv, msg.seq)
        if readers is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no message {msg.seq} in this conversation")
        session.reply(
            addressed(
                ImMsg(
                    msg_type=MsgType.RECEIPTS,
                    code=ErrorCode.OK,
                    seq=msg.seq,
                    read_num=len(readers),
                    reader_ids=readers if msg.with_readers else None,
                ),
                conv,
            )
        )

    async def states(self, user_id: int) -> list[ConvState]:
        async with self._engine.connect() as conn:
            return await reads.conversations(conn, user_id)

    async def unread(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 9: the unread count of every conversation that has one."""
        assert session.user_id is not None
        states = await self.states(session.user_id)
        session.reply(ImMsg(msg_type=MsgType.UNREAD, code=ErrorCode.OK, unread=unread_list(states)))

    async def convs(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 15: every conversation of the user, with positions and counts."""
        assert session.user_id is not None
        states = await self.states(session.user_id)
        session.reply(ImMsg(msg_type=MsgType.CONVS, code=ErrorCode.OK, convs=conv_list(states)))
