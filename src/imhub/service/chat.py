"""Sending and recalling messages, one-to-one and in groups: store first, answer the sender
after the commit, then deliver.

Each connection of a recipient that shows the conversation (chat_enter) gets the message as
``chat`` (3), the others as ``notice`` (7); the sender's other connections get the same copy,
so a user's phone shows what their PC sent. A recipient who has the conversation open on some
connection has read the message at once, and the sender of a one-to-one message is told.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from time import perf_counter
from typing import Any

from imhub.metrics import Histogram
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.delivery import Delivery
from imhub.service.sessions import InFlight, Session
from imhub.storage.messages import MsgIn, Recall, RecallIn, Stored, StoreMessages
from imhub.storage.writer import BatchWriter

MAX_MSG_ID_CLIENT = 50


class ChatService:
    def __init__(
        self,
        writer: BatchWriter,
        membership: Membership,
        delivery: Delivery,
        store: StoreMessages,
        recall: Recall,
        clock_ms: Callable[[], int],
        recall_window_ms: int,
        max_inflight: int = 1000,
        latency: Histogram | None = None,
    ) -> None:
        self._writer = writer
        self._membership = membership
        self._delivery = delivery
        self._store = store
        self._recall = recall
        self._clock_ms = clock_ms
        self._recall_window_ms = recall_window_ms
        self._max_inflight = max_inflight
        self._latency = latency  # seconds from reading a message to writing its answer

    def chat(self, session: Session, msg: ImMsg) -> Coroutine[Any, Any, None] | None:
        """Handle msgType 3. Synchronous: the write is queued in arrival order (an awaitable
        only when the connection has too many sends unanswered: see ``InFlight``)."""
        assert session.user_id is not None
        mid = msg.msg_id_client
        if not mid or len(mid) > MAX_MSG_ID_CLIENT:
            raise ImError(
                ErrorCode.BAD_REQUEST, f"msgIdClient must be 1 to {MAX_MSG_ID_CLIENT} characters"
            )
        if not msg.team_id and msg.to_user_id is None:
            raise ImError(
                ErrorCode.BAD_REQUEST, "toUserId or teamId is required", msg_id_client=mid
            )
        if not msg.team_id and msg.to_user_id == session.user_id:
            raise ImError(ErrorCode.BAD_REQUEST, "cannot chat with yourself", msg_id_client=mid)
        if msg.body is None:
            raise ImError(ErrorCode.BAD_REQUEST, "body is required", msg_id_client=mid)
        item = MsgIn(
            from_user_id=session.user_id,
            to_user_id=0 if msg.team_id else msg.to_user_id or 0,
            team_id=msg.team_id or 0,
            client_type=session.client_type,
            body_type=msg.body_type or 0,
            body=msg.body,
            voice_time=msg.time or 0,
            msg_id_client=mid,
            send_time=self._clock_ms(),
        )
        if session.inflight is None:
            session.inflight = InFlight(self._max_inflight)
        waiting = session.inflight.add()
        done = partial(self._stored, session, mid, perf_counter())
        self._writer.submit(self._store, item, done)
        return waiting

    def _stored(self, session: Session, mid: str, began: float, result: Stored | ImError) -> None:
        assert session.inflight is not None
        session.inflight.done()
        if self._latency is not None:
            self._latency.observe(self._writer.batch_done - began)
        if isinstance(result, ImError):
            session.error(result.code, result.reason, mid)
            return
        row = result.row
        session.reply(
            ImMsg(
                msg_type=MsgType.CHAT_ANSWER,
                code=ErrorCode.OK,
                chat_id=row.chat_id or None,
                team_id=row.team_id or None,
                to_user_id=row.to_user_id or None,
                seq=row.seq,
                msg_id_client=mid,
                msg_id_server=row.msg_id_server,
                send_time=row.send_time,
            )
        )
        if result.duplicate:
            return  # delivered when it was first stored
        self._delivery.row(row, result.audience, skip=session)
        if row.chat_id:  # the sender and the reader's devices learn it was read at once
            for reader in result.readers:
                self.receipt(row.chat_id, reader, row.seq, {row.from_user_id, reader})

    def receipt(
        self, chat_id: int, reader: int, seq: int, users: set[int], skip: Session | None = None
    ) -> None:
        """Tell ``users`` that ``reader`` has read a one-to-one chat up to ``seq``."""
        self._delivery.send(
            ImMsg(msg_type=MsgType.READ, chat_id=chat_id, from_user_id=reader, seq=seq),
            users,
            skip,
        )

    async def recall(self, session: Session, msg: ImMsg) -> None:
        """Handle msgType 10: the sender takes a message back within the recall window."""
        assert session.user_id is not None
        conv = await self._membership.conv_of(session.user_id, msg)
        if msg.seq is None:
            raise ImError(ErrorCode.BAD_REQUEST, "seq of the message to recall is required")
        item = RecallIn(
            session.user_id,
            conv,
            msg.seq,
            self._clock_ms(),
            self._recall_window_ms,
            session.client_type,
        )
        await self._writer.call(self._recall, item, partial(self._recalled, session))

    def _recalled(self, session: Session, result: Stored) -> None:
        event = result.row
        session.reply(
            ImMsg(
                msg_type=MsgType.RECALL,
                code=ErrorCode.OK,
                chat_id=event.chat_id or None,
                team_id=event.team_id or None,
                seq=event.seq,
                ref_seq=event.ref_seq,
                send_time=event.send_time,
            )
        )
        if not result.duplicate:
            self._delivery.row(event, result.audience, skip=session)
