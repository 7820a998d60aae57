"""Routes for what a user has: their conversations, unread counts and history."""

from __future__ import annotations

from aiohttp import web

from imhub.http.inputs import params_of, query_of
from imhub.http.models import (
    ConvPageAnswer,
    ConvPageQuery,
    HistoryAnswer,
    HistoryQuery,
    UnreadAnswer,
    UserPath,
)
from imhub.http.responses import json_response
from imhub.http.routes import Params, Route
from imhub.protocol.conversation import conv_ids
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.delivery import message
from imhub.service.inbox import InboxService
from imhub.service.reads import conv_list, unread_list

USER = "/api/v1/users/{userId}"

CONVS_DOC = """One-to-one chats by `chatId`, then groups by `teamId`, each with the user's
read position, the newest `seq` and the unread count (as the protocol's `convs`); groups the
user left are listed with `left: true`. Page with `after` = the `next` of the previous page."""

HISTORY_DOC = """The `limit` (default 200, at most 500) messages of a chat or group just
before `beforeSeq` (default: the newest), oldest first, as the protocol's history (msgType
14): messages, recalls and group events. A page also stops at about half the server's
`--max-outbound` bytes; `more` says older ones exist: page back with `beforeSeq` = the first
`seq` of this page. The user must be a member (a former member sees up to their leaving):
403 for a group they are not in, 404 for a chat that is not theirs."""


class InboxRoutes:
    def __init__(self, inbox: InboxService) -> None:
        self._inbox = inbox

    def routes(self) -> list[Route]:
        return [
            Route("GET", USER + "/conversations", self.conversations,
                  "A user's conversations", answer=ConvPageAnswer, query=ConvPageQuery,
                  params=UserPath, errors=(404,), tag="conversations", description=CONVS_DOC),
            Route("GET", USER + "/unread", self.unread, "A user's unread counts",
                  answer=UnreadAnswer, query=ConvPageQuery, params=UserPath, errors=(404,),
                  tag="conversations",
                  description="The conversations with unread messages, paged as"
                  " conversations are, and the total over all of them."),
            Route("GET", USER + "/history", self.history, "A page of a conversation's history",
                  answer=HistoryAnswer, query=HistoryQuery, params=UserPath,
                  errors=(403, 404), tag="conversations", description=HISTORY_DOC),
        ]  # fmt: skip

    async def conversations(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        q = query_of(request, ConvPageQuery)
        page = await self._inbox.conversations(user_id, q.after, q.limit)
        return json_response(ConvPageAnswer(conv_list(page.convs), page.total_unread, page.next))

    async def unread(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        q = query_of(request, ConvPageQuery)
        page = await self._inbox.conversations(user_id, q.after, q.limit, unread_only=True)
        return json_response(UnreadAnswer(unread_list(page.convs), page.total_unread, page.next))

    async def history(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        q = query_of(request, HistoryQuery)
        page = await self._inbox.history(
            user_id,
            ImMsg(
                msg_type=MsgType.HISTORY,
                chat_id=q.chat_id,
                team_id=q.team_id,
                before_seq=q.before_seq,
                limit=q.limit,
            ),
        )
        chat_id, team_id = conv_ids(page.conv)
        return json_response(
            HistoryAnswer(
                [message(r) for r in page.rows], page.more, chat_id or None, team_id or None
            )
        )
