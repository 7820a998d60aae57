"""Which conversation a message addresses, and whether the user belongs to it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg
from imhub.storage.chats import ChatRow, get_chat
from imhub.storage.teams import TeamInfo, Teams, former_member


class Membership:
    def __init__(self, engine: AsyncEngine, teams: Teams) -> None:
        self._engine = engine
        self._teams = teams
        self._chats: dict[int, ChatRow] = {}  # pair rows never change: cached for good

    async def conv_of(self, user_id: int, msg: ImMsg) -> int:
        """The conversation key of ``msg``'s ``teamId`` or ``chatId``, if the user is in it."""
        if msg.team_id:
            await self.team(user_id, msg.team_id)
            return -msg.team_id
        if msg.chat_id:
            await self.chat(user_id, msg.chat_id)
            return msg.chat_id
        raise ImError(ErrorCode.BAD_REQUEST, "chatId or teamId is required")

    async def visible(self, user_id: int, msg: ImMsg) -> tuple[int, int | None]:
        """The conversation ``msg`` names and how far the user may see it: None for a member,
        and for a former member of a group the seq of the event that ended the membership
        (they keep what came before it, and nothing after). Raises as ``conv_of``."""
        try:
            return await self.conv_of(user_id, msg), None
        except ImError as exc:
            # Not a member (403), or a dissolved group (404): a former member still sees it.
            if exc.code not in (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND) or not msg.team_id:
                raise
            async with self._engine.connect() as conn:
                upto = await former_member(conn, msg.team_id, user_id)
            if upto is None:
                raise
            return -msg.team_id, upto

    async def chat(self, user_id: int, chat_id: int) -> ChatRow:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = await get_chat(self._engine, chat_id)
            if chat is not None:
                if len(self._chats) > 200_000:
                    self._chats.clear()
                self._chats[chat_id] = chat
        if chat is None or chat.peer_of(user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no chat {chat_id} of yours")
        return chat

    async def team(self, user_id: int, team_id: int) -> TeamInfo:
        info = await self._teams.read(self._engine, team_id)
        if info is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no group {team_id}")
        if user_id not in info.members:
            raise ImError(ErrorCode.FORBIDDEN, f"you are not a member of group {team_id}")
        return info

    async def info(self, team_id: int) -> TeamInfo:
        """A group, whoever asks (a backend); 404 when there is none (or it was dissolved)."""
        info = await self._teams.read(self._engine, team_id)
        if info is None:
            raise ImError(ErrorCode.NOT_FOUND, f"no group {team_id}")
        return info

    async def members(self, team_id: int) -> frozenset[int]:
        return (await self.info(team_id)).members

    async def peer(self, user_id: int, conv: int) -> int | None:
        """The other user of a one-to-one conversation (None for a group)."""
        if conv < 0:
            return None
        return (await self.chat(user_id, conv)).peer_of(user_id)
