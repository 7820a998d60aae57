"""Thin HTTP routes over the services, for business backends (API key).

Routes: ``POST /api/v1/notices``, ``POST /api/v1/users``,
``POST /api/v1/tokens``, ``POST /api/v1/teams/{create,add,remove,leave,rename,dismiss,info}``.
Errors are JSON ``{"code", "reason"}`` with
the same number as the HTTP status, whatever went wrong: a body that does not decode (any
bytes, any JSON) or holds a number outside what its column stores is a 400 before anything is
done with it, and a failure of ours is a JSON 500. ``/ws`` is routed by the gateway before it
gets here, and the gateway has read the body (in time) before a route is called.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.http.responses import json_response
from imhub.http.routes import Params, Route
from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import BodyType, Id, MsgType, SmallInt
from imhub.service.auth import DEFAULT_TTL, TokenAuthority
from imhub.service.notices import NoticeService
from imhub.service.teams import TeamService
from imhub.storage import users

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every integer a request carries has the range of where it goes: ids as on the wire (``Id``),
# kinds in 32-bit columns (``SmallInt``), a token's lifetime so that its expiry stays a number
# every JWT library reads (about 68 years at most).
Seconds = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class NoticeRequest(msgspec.Struct, rename="camel"):
    to_user_ids: list[Id]
    body: str
    body_type: SmallInt = BodyType.NOTIFICATION
    from_user_id: Id = 0


class UserRequest(msgspec.Struct, rename="camel"):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    mobile: Annotated[str, msgspec.Meta(max_length=20)] = ""
    head_img: Annotated[str, msgspec.Meta(max_length=125)] = ""


class TeamRequest(msgspec.Struct, rename="camel"):
    user_id: Id  # the acting user: the same rules apply as when they act over the protocol
    team_id: Id = 0
    team_name: str = ""
    member_ids: list[Id] = msgspec.field(default_factory=list)


TEAM_OPS = {
    "create": MsgType.TEAM_CREATE,
    "add": MsgType.TEAM_ADD,
    "remove": MsgType.TEAM_REMOVE,
    "leave": MsgType.TEAM_LEAVE,
    "rename": MsgType.TEAM_RENAME,
    "dismiss": MsgType.TEAM_DISMISS,
    "info": MsgType.TEAM_INFO,
}


class TokenRequest(msgspec.Struct, rename="camel"):
    user_id: Id
    ttl: Seconds = DEFAULT_TTL


REQUESTS = (NoticeRequest, UserRequest, TeamRequest, TokenRequest)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(kind) for kind in REQUESTS
}


def parse_body(payload: bytes, kind: type[T]) -> T:
    """A request body as ``kind``, or ``ImError(BAD_REQUEST)`` whatever the bytes hold."""
    decoder: msgspec.json.Decoder[T] = _decoders[kind]
    return codec.decode_as(decoder, payload, "request")


class HttpApi:
    """The API for business backends, under ``/api/v1`` with the API key."""

    def __init__(
        self,
        engine: AsyncEngine,
        auth: TokenAuthority,
        notices: NoticeService,
        teams: TeamService,
    ) -> None:
        self._engine = engine
        self._auth = auth
        self._notices = notices
        self._teams = teams

    def routes(self) -> list[Route]:
        out = [
            Route("POST", "/api/v1/notices", self.post_notice, "Send a notice", NoticeRequest),
            Route(
                "POST", "/api/v1/users", self.post_user, "Create a user", UserRequest, status=201
            ),
            Route("POST", "/api/v1/tokens", self.post_token, "Mint a client token", TokenRequest),
        ]
        for name in TEAM_OPS:
            out.append(
                Route(
                    "POST", f"/api/v1/teams/{name}", self.post_team, f"Group: {name}", TeamRequest
                )
            )
        return out

    @staticmethod
    async def _body(request: web.BaseRequest, kind: type[T]) -> T:
        return parse_body(await request.read(), kind)

    async def post_notice(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req: NoticeRequest = await self._body(request, NoticeRequest)
        stored = await self._notices.notify(
            req.from_user_id, req.to_user_ids, req.body_type, req.body
        )
        return json_response(
            {
                "noticeId": stored.notice.notice_id,
                "sendTime": stored.notice.send_time,
                "delivered": stored.live,
                "pending": stored.pending,
            }
        )

    async def post_user(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req: UserRequest = await self._body(request, UserRequest)
        user_id = await users.add_user(self._engine, req.username, req.mobile, req.head_img)
        return json_response({"userId": user_id, "username": req.username}, status=201)

    async def post_token(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req: TokenRequest = await self._body(request, TokenRequest)
        if await users.get_user(self._engine, req.user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {req.user_id} does not exist")
        return json_response({"token": self._auth.mint(req.user_id, req.ttl)})

    async def post_team(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        """``POST /api/v1/teams/{create,add,remove,leave,rename,dismiss,info}``."""
        req: TeamRequest = await self._body(request, TeamRequest)
        op = TEAM_OPS[request.path.rsplit("/", 1)[1]]
        if op == MsgType.TEAM_INFO:
            answer = await self._teams.info(req.user_id, req.team_id)
        else:
            answer = await self._teams.change(
                op,
                req.user_id,
                team_id=req.team_id,
                name=req.team_name,
                member_ids=req.member_ids,
            )
        return web.Response(body=codec.encode(answer), content_type="application/json")
