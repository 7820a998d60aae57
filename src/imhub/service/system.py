"""System messages: a business backend writes into a one-to-one chat or a group as the
system (``fromUserId`` 0). They are stored, numbered and delivered like users' messages
(``chat`` to connections showing the conversation, ``notice`` to the others, the backlog and
sync for those offline), and count as unread for every member (``storage.system``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from imhub.protocol.conversation import conv_key
from imhub.protocol.errors import ErrorCode, ImError
from imhub.service.chat import ChatService
from imhub.service.delivery import Delivery
from imhub.storage.conversations import MsgRow
from imhub.storage.messages import Stored
from imhub.storage.system import StoreSystemMessages, SystemIn
from imhub.storage.writer import BatchWriter


class SystemMessageService:
    def __init__(
        self,
        writer: BatchWriter,
        delivery: Delivery,
        store: StoreSystemMessages,
        chat: ChatService,
        clock_ms: Callable[[], int],
    ) -> None:
        self._writer = writer
        self._delivery = delivery
        self._store = store
        self._chat = chat
        self._clock_ms = clock_ms

    async def post(
        self,
        *,
        chat_id: int | None,
        team_id: int | None,
        body_type: int,
        body: str,
        msg_id_client: str | None,
    ) -> tuple[MsgRow, bool]:
        """Store a system message and deliver it; the stored row, and whether it was stored
        before under the same ``msg_id_client`` (then nothing is delivered again)."""
        if bool(chat_id) == bool(team_id):
            raise ImError(ErrorCode.BAD_REQUEST, "give either chatId or teamId")
        item = SystemIn(
            conv_key(chat_id, team_id),
            body_type,
            body,
            msg_id_client or f"system-{uuid.uuid4().hex}",
            self._clock_ms(),
        )
        stored = await self._writer.call(self._store, item, self._deliver)
        return stored.row, stored.duplicate

    def _deliver(self, stored: Stored) -> None:
        if stored.duplicate:
            return
        row = stored.row
        self._delivery.row(row, stored.audience)
        if row.chat_id:  # members who show the chat read it at once: their devices learn it
            for reader in stored.readers:
                self._chat.receipt(row.chat_id, reader, row.seq, {reader})
