"""Routes that send: notices (to users, to a group's members, to everyone online) and
system messages into a conversation."""

from __future__ import annotations

from aiohttp import web

from imhub.http.inputs import body_of, params_of
from imhub.http.models import (
    BroadcastRequest,
    NoticeAnswer,
    NoticeRequest,
    SystemMessageAnswer,
    SystemMessageRequest,
    TeamPath,
)
from imhub.http.responses import json_response
from imhub.http.routes import Params, Route
from imhub.service.notices import NoticeService
from imhub.service.system import SystemMessageService
from imhub.storage.notices import StoredNotice

NOTICE_DOC = """Stored once; written at once to every connection of each target online
(`delivered`) and kept for the others until their next login (`pending`). Each target gets it
once, as `{"msgType": 7, "noticeId", "fromUserId", "bodyType", "body", "sendTime"}`."""

SYSTEM_DOC = """Stored and numbered in the conversation like a chat message (`msgType` 3)
from the system: `fromUserId` 0, `fromClientType` 5 (REST), `bodyType` 7 (tips) unless
given. Delivered like a chat message (`chat` to connections showing the conversation,
`notice` to the others, the login backlog and sync for those offline), in history, and
unread for every member until read. Give `msgIdClient` to make a retry safe: the same id
answers the first copy with `duplicate: true`; an id already used in another conversation
is a 409."""


def _answer(stored: StoredNotice) -> NoticeAnswer:
    notice = stored.notice
    return NoticeAnswer(notice.notice_id, notice.send_time, list(stored.live), list(stored.pending))


class MessagingRoutes:
    def __init__(self, notices: NoticeService, system: SystemMessageService) -> None:
        self._notices = notices
        self._system = system

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/api/v1/notices", self.to_users, "Send a notice to users",
                  NoticeRequest, NoticeAnswer, errors=(404,), tag="notices", message=True,
                  description=NOTICE_DOC + " 1 to 10,000 targets; an unknown one is a 404."),
            Route("POST", "/api/v1/teams/{teamId}/notices", self.to_team,
                  "Send a notice to a group's members", BroadcastRequest, NoticeAnswer,
                  params=TeamPath, errors=(404,), tag="notices", message=True,
                  description=NOTICE_DOC + " The members when it is stored."),
            Route("POST", "/api/v1/notices/online", self.to_online,
                  "Send a notice to every user online", BroadcastRequest, NoticeAnswer,
                  tag="notices", message=True,
                  description="Every user online when it is stored gets it at once;"
                  " nobody gets it later (`pending` is empty)."),
            Route("POST", "/api/v1/system-messages", self.system_message,
                  "Post a system message into a chat or group", SystemMessageRequest,
                  SystemMessageAnswer, errors=(404, 409), tag="messages", message=True,
                  description=SYSTEM_DOC),
        ]  # fmt: skip

    async def to_users(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req = await body_of(request, NoticeRequest)
        stored = await self._notices.notify(
            req.from_user_id, req.to_user_ids, req.body_type, req.body
        )
        return json_response(_answer(stored))

    async def to_team(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        team_id = params_of(params, TeamPath).team_id
        req = await body_of(request, BroadcastRequest)
        stored = await self._notices.to_team(team_id, req.from_user_id, req.body_type, req.body)
        return json_response(_answer(stored))

    async def to_online(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req = await body_of(request, BroadcastRequest)
        stored = await self._notices.to_online(req.from_user_id, req.body_type, req.body)
        return json_response(_answer(stored))

    async def system_message(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req = await body_of(request, SystemMessageRequest)
        row, duplicate = await self._system.post(
            chat_id=req.chat_id,
            team_id=req.team_id,
            body_type=req.body_type,
            body=req.body,
            msg_id_client=req.msg_id_client,
        )
        return json_response(
            SystemMessageAnswer(
                seq=row.seq,
                msg_id_server=row.msg_id_server,
                msg_id_client=row.msg_id_client,
                send_time=row.send_time,
                duplicate=duplicate,
                chat_id=row.chat_id or None,
                team_id=row.team_id or None,
            )
        )
