"""The application's requests beyond sending: entering and quitting conversations, reads,
recalls, history, counts, receipts and groups. Each is one protocol request (docs/protocol.md)
through ``ImClient.request``; what it changes on this client goes through the session core."""

from __future__ import annotations

from typing import Any

from imhub.client import arguments
from imhub.client.actions import address
from imhub.client.core import SessionCore
from imhub.client.events import Message
from imhub.client.inbox import message, to_dict
from imhub.protocol.messages import ImMsg, MsgType


class Calls:
    _core: SessionCore

    async def request(self, request: dict[str, Any]) -> ImMsg:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    async def enter(self, *, chat_id: int | None = None, team_id: int | None = None) -> int:
        """Show a conversation: its messages arrive as chat and are read; returns the read
        position. Re-entered automatically after a reconnect."""
        conv = arguments.conversation(chat_id, team_id)
        self._core.entering(conv)
        self._pump()  # its start is saved before the request leaves
        answer = await self.request({"msgType": MsgType.CHAT_ENTER, **address(conv)})
        self._core.entered_at(conv, answer.seq or 0)
        self._pump()
        return answer.seq or 0

    async def quit(self, *, chat_id: int | None = None, team_id: int | None = None) -> None:
        conv = arguments.conversation(chat_id, team_id)
        self._core.set_entered(conv, False)
        self._pump()
        await self.request({"msgType": MsgType.CHAT_QUIT, **address(conv)})

    async def read(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> int:
        """Mark read up to ``seq``; returns the read position."""
        answer = await self.request(
            {
                "msgType": MsgType.READ,
                "seq": arguments.whole("seq", seq),
                **address(arguments.conversation(chat_id, team_id)),
            }
        )
        return answer.seq or 0

    async def recall(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> int:
        """Recall your message ``seq``; returns the recall's own position."""
        conv = arguments.conversation(chat_id, team_id)
        answer = await self.request(
            {"msgType": MsgType.RECALL, "seq": arguments.whole("seq", seq), **address(conv)}
        )
        self._core.silent(conv, answer.seq or 0)
        self._pump()
        return answer.seq or 0

    async def history(
        self,
        *,
        chat_id: int | None = None,
        team_id: int | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> tuple[list[Message], bool]:
        """A page of older messages (oldest first) and whether there are more before it."""
        request: dict[str, Any] = {
            "msgType": MsgType.HISTORY,
            "limit": arguments.limit(limit),
            **address(arguments.conversation(chat_id, team_id)),
        }
        if before_seq is not None:
            request["beforeSeq"] = arguments.whole("before_seq", before_seq)
        answer = await self.request(request)
        messages = [message(m, False) for m in answer.messages or () if m.msg_type == MsgType.CHAT]
        return messages, bool(answer.more)

    async def unread(self) -> list[dict[str, Any]]:
        answer = await self.request({"msgType": MsgType.UNREAD})
        return [to_dict(u) for u in answer.unread or ()]

    async def conversations(self) -> list[dict[str, Any]]:
        answer = await self.request({"msgType": MsgType.CONVS})
        return [to_dict(c) for c in answer.convs or ()]

    async def receipts(
        self, seq: int, *, chat_id: int | None = None, team_id: int | None = None
    ) -> tuple[int, list[int]]:
        """How many have read message ``seq``, and who."""
        answer = await self.request(
            {
                "msgType": MsgType.RECEIPTS,
                "seq": arguments.whole("seq", seq),
                "withReaders": True,
                **address(arguments.conversation(chat_id, team_id)),
            }
        )
        return answer.read_num or 0, list(answer.reader_ids or ())

    async def group(self, op: MsgType, **fields: Any) -> ImMsg:
        """A group operation (``MsgType.TEAM_CREATE`` … ``TEAM_INFO``), e.g.
        ``group(MsgType.TEAM_CREATE, teamName="crew", memberIds=[2, 3])``."""
        answer = await self.request({"msgType": op, **fields})
        if answer.team_id and answer.seq:
            self._core.silent(-answer.team_id, answer.seq)
            self._pump()
        return answer
