"""A user's conversations, unread counts and history, as a business backend reads them.

The same reads as the protocol's (convs, unread, history) for a user named by the backend,
who must exist. Conversation lists are paged by a cursor that names the last conversation of
the previous page: one-to-one chats by ``chatId``, then groups by ``teamId``. Keys never
change, so paging skips nobody and repeats nobody; a conversation that starts meanwhile
appears on a later page when its key sorts after the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import MAX_ID, ImMsg
from imhub.service.history import HistoryPage, HistoryService
from imhub.storage import reads, users
from imhub.storage.reads import ConvState

CURSOR = re.compile(r"(chat|team):([0-9]{1,16})")


def cursor_of(state: ConvState) -> str:
    return f"chat:{state.chat_id}" if state.chat_id else f"team:{state.team_id}"


def _order(state: ConvState) -> tuple[int, int]:
    return (1, state.team_id) if state.team_id else (0, state.chat_id)


def _parse(cursor: str) -> tuple[int, int]:
    found = CURSOR.fullmatch(cursor)
    if found is None or int(found[2]) > MAX_ID:
        raise ImError(ErrorCode.BAD_REQUEST, f"bad cursor {cursor!r}: give the next of a page")
    return (0 if found[1] == "chat" else 1, int(found[2]))


@dataclass(slots=True, frozen=True)
class ConvPage:
    convs: list[ConvState]
    next: str | None  # the cursor of the next page; None: this is the last
    total_unread: int  # over every conversation, not this page only


class InboxService:
    def __init__(self, engine: AsyncEngine, history: HistoryService, byte_limit: int) -> None:
        self._engine = engine
        self._history = history
        self._byte_limit = byte_limit  # a history page stops at about half of it

    async def _states(self, user_id: int) -> list[ConvState]:
        if await users.get_user(self._engine, user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {user_id} does not exist")
        async with self._engine.connect() as conn:
            return sorted(await reads.conversations(conn, user_id), key=_order)

    async def conversations(
        self, user_id: int, after: str | None, limit: int, unread_only: bool = False
    ) -> ConvPage:
        """A page of the user's conversations after the cursor ``after`` (None: from the
        first), with ``unread_only`` only those with unread messages."""
        start = _parse(after) if after else (-1, 0)
        states = await self._states(user_id)
        total = sum(s.unread for s in states)
        rest = [s for s in states if _order(s) > start and (s.unread or not unread_only)]
        page = rest[:limit]
        more = len(rest) > limit
        return ConvPage(page, cursor_of(page[-1]) if more else None, total)

    async def history(self, user_id: int, query: ImMsg) -> HistoryPage:
        """A history page of a conversation of the user (``chatId`` or ``teamId``,
        ``beforeSeq``, ``limit`` of ``query``)."""
        if bool(query.chat_id) == bool(query.team_id):
            raise ImError(ErrorCode.BAD_REQUEST, "give either chatId or teamId")
        if await users.get_user(self._engine, user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {user_id} does not exist")
        return await self._history.page(user_id, query, self._byte_limit)
