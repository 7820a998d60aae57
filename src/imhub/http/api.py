"""Thin HTTP routes over the services, for business backends (API key) and for probes.

Routes: ``GET /healthz``, ``POST /api/v1/notices``, ``POST /api/v1/users``,
``POST /api/v1/tokens``, ``POST /api/v1/teams/{create,add,remove,leave,rename,dismiss,info}``.
Errors are JSON ``{"code", "reason"}`` with
the same number as the HTTP status. ``/ws`` is routed by the gateway before it gets here.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import BodyType, Id, MsgType
from imhub.service.auth import DEFAULT_TTL, TokenAuthority
from imhub.service.notices import NoticeService
from imhub.service.teams import TeamService
from imhub.storage import users

Route = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class NoticeRequest(msgspec.Struct, rename="camel"):
    to_user_ids: list[Id]
    body: str
    body_type: Annotated[int, msgspec.Meta(ge=0)] = BodyType.NOTIFICATION
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
    ttl: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_TTL


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=codec.encode_json(value), status=status, content_type="application/json"
    )


class HttpApi:
    def __init__(
        self,
        api_key: str,
        engine: AsyncEngine,
        auth: TokenAuthority,
        notices: NoticeService,
        teams: TeamService,
        stats: Callable[[], dict[str, int]],
    ) -> None:
        self._api_key = api_key.encode()
        self._engine = engine
        self._auth = auth
        self._notices = notices
        self._teams = teams
        self._stats = stats
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/"): self.index,
            ("GET", "/healthz"): self.healthz,
            ("POST", "/api/v1/notices"): self.post_notice,
            ("POST", "/api/v1/users"): self.post_user,
            ("POST", "/api/v1/tokens"): self.post_token,
        }
        for name in TEAM_OPS:
            self._routes[("POST", f"/api/v1/teams/{name}")] = self.post_team

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get((request.method, request.path))
        try:
            if route is None:
                known = any(path == request.path for _, path in self._routes)
                if known:
                    raise web.HTTPMethodNotAllowed(request.method, [])
                raise ImError(ErrorCode.NOT_FOUND, f"no route {request.path}")
            return await route(request)
        except ImError as exc:
            return json_response({"code": exc.code, "reason": exc.reason}, status=exc.code)
        except web.HTTPException as exc:
            return json_response({"code": exc.status, "reason": exc.reason}, status=exc.status)

    def _authorize(self, request: web.BaseRequest) -> None:
        given = request.headers.get("X-Api-Key", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), self._api_key):
            raise ImError(ErrorCode.UNAUTHORIZED, "missing or wrong API key")

    @staticmethod
    async def _body(request: web.BaseRequest, kind: type[Any]) -> Any:
        try:
            return msgspec.json.decode(await request.read(), type=kind)
        except msgspec.ValidationError as exc:
            raise ImError(ErrorCode.BAD_REQUEST, f"invalid request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ImError(ErrorCode.BAD_REQUEST, f"malformed JSON: {exc}") from None

    async def index(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(
            text="imhub is running. TCP frames and WebSocket (/ws) on this port; "
            "see docs/protocol.md.\n"
        )

    async def healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return json_response({"status": "ok", **self._stats()})

    async def post_notice(self, request: web.BaseRequest) -> web.StreamResponse:
        self._authorize(request)
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

    async def post_user(self, request: web.BaseRequest) -> web.StreamResponse:
        self._authorize(request)
        req: UserRequest = await self._body(request, UserRequest)
        user_id = await users.add_user(self._engine, req.username, req.mobile, req.head_img)
        return json_response({"userId": user_id, "username": req.username}, status=201)

    async def post_token(self, request: web.BaseRequest) -> web.StreamResponse:
        self._authorize(request)
        req: TokenRequest = await self._body(request, TokenRequest)
        if await users.get_user(self._engine, req.user_id) is None:
            raise ImError(ErrorCode.NOT_FOUND, f"user {req.user_id} does not exist")
        return json_response({"token": self._auth.mint(req.user_id, req.ttl)})

    async def post_team(self, request: web.BaseRequest) -> web.StreamResponse:
        """``POST /api/v1/teams/{create,add,remove,leave,rename,dismiss,info}``."""
        self._authorize(request)
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
