"""Routes for users: create, read, list, change and delete them, mint their tokens, and see
whether they are online (on which client types)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from imhub.http.inputs import body_of, params_of, query_of
from imhub.http.models import (
    Page,
    Presence,
    PresencePage,
    TokenAnswer,
    TokenRequest,
    User,
    UserPage,
    UserPatch,
    UserPath,
    UserRequest,
)
from imhub.http.responses import json_response
from imhub.http.routes import Params, Route
from imhub.service import presence
from imhub.service.presence import PresenceService
from imhub.service.users import UserService
from imhub.storage.users import UserRow

USER = "/api/v1/users/{userId}"

DELETE_DOC = """The user's row stays (their messages keep their sender) with `delete_flag`
set, and at once: every live connection of the user (TCP and WebSocket) gets an error frame
`{"msgType": 8, "code": 401, "reason": "user deleted"}` and is closed; their next login, with
any token, is refused with 401; no one can send to them, add them to a group, or mint a
token for them. Deleting again answers 404."""


def _user(row: UserRow) -> User:
    return User(row.user_id, row.username, row.mobile, row.head_img)


def _presence(p: presence.Presence) -> Presence:
    return Presence(p.user_id, p.connections, p.client_types)


class UserRoutes:
    def __init__(self, users: UserService, presence: PresenceService) -> None:
        self._users = users
        self._presence = presence

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/api/v1/users", self.create, "Create a user", UserRequest, User,
                  status=201, tag="users"),
            Route("GET", "/api/v1/users", self.list, "List users", answer=UserPage, query=Page,
                  tag="users", description="By id, oldest first; deleted users are left out."),
            Route("GET", USER, self.read, "Read a user", answer=User, params=UserPath,
                  errors=(404,), tag="users"),
            Route("PATCH", USER, self.update, "Change a user", UserPatch, User,
                  params=UserPath, errors=(404,), tag="users"),
            Route("DELETE", USER, self.delete, "Delete a user (soft)", params=UserPath,
                  status=204, errors=(404,), tag="users", description=DELETE_DOC),
            Route("POST", "/api/v1/tokens", self.token, "Mint a client token", TokenRequest,
                  TokenAnswer, errors=(404,), tag="users"),
            Route("GET", "/api/v1/online", self.online, "List the users online",
                  answer=PresencePage, query=Page, tag="presence",
                  description="By id; each with its connections' client types."),
            Route("GET", USER + "/online", self.online_one, "Whether a user is online",
                  answer=Presence, params=UserPath, errors=(404,), tag="presence"),
        ]  # fmt: skip

    async def create(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req = await body_of(request, UserRequest)
        row = await self._users.create(req.username, req.mobile, req.head_img)
        return json_response(_user(row), status=201)

    async def list(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        page = query_of(request, Page)
        rows, after = await self._users.page(page.after, page.limit)
        return json_response(UserPage([_user(r) for r in rows], after))

    async def read(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        return json_response(_user(await self._users.get(user_id)))

    async def update(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        patch = await body_of(request, UserPatch)
        changes = {
            column: value
            for column, value in msgspec.structs.asdict(patch).items()
            if value is not msgspec.UNSET
        }
        return json_response(_user(await self._users.update(user_id, changes)))

    async def delete(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        await self._users.delete(params_of(params, UserPath).user_id)
        return web.Response(status=204)

    async def token(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        req = await body_of(request, TokenRequest)
        return json_response(TokenAnswer(await self._users.token(req.user_id, req.ttl)))

    async def online(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        page = query_of(request, Page)
        found, after = await self._presence.find_page(page.after, page.limit)
        return json_response(PresencePage([_presence(p) for p in found], after))

    async def online_one(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        user_id = params_of(params, UserPath).user_id
        await self._users.get(user_id)  # 404 for a user who does not exist
        return json_response(_presence(await self._presence.find(user_id)))
