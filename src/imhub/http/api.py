"""The HTTP API for business backends, under ``/api/v1`` with the API key: thin routes over
the services, declared with their typed bodies (``http.models``) for the OpenAPI document.

Errors are JSON ``{"code", "reason"}`` with the same number as the HTTP status, whatever went
wrong: a body, query or path parameter that does not decode (any bytes, any JSON), or holds a
number outside what its column stores, is a 400 before anything is done with it, and a failure
of ours is a JSON 500. ``/ws`` is routed by the gateway before it gets here, and the gateway
has read the body (in time) before a route is called. docs/http-api.md describes every route.
"""

from __future__ import annotations

from imhub.http.inbox import InboxRoutes
from imhub.http.inputs import parse_body
from imhub.http.messaging import MessagingRoutes
from imhub.http.models import (
    BroadcastRequest,
    NoticeRequest,
    SystemMessageRequest,
    TeamRequest,
    TokenRequest,
    UserPatch,
    UserRequest,
)
from imhub.http.routes import Route
from imhub.http.teams import TeamRoutes
from imhub.http.users import UserRoutes

__all__ = ["REQUESTS", "HttpApi", "NoticeRequest", "TokenRequest", "UserRequest", "parse_body"]

# Every request body the API reads (the tests feed each of them every kind of bad input).
REQUESTS = (
    NoticeRequest,
    BroadcastRequest,
    SystemMessageRequest,
    UserRequest,
    UserPatch,
    TeamRequest,
    TokenRequest,
)


class HttpApi:
    def __init__(
        self, users: UserRoutes, inbox: InboxRoutes, messaging: MessagingRoutes, teams: TeamRoutes
    ) -> None:
        self._parts = (users, inbox, messaging, teams)

    def routes(self) -> list[Route]:
        return [route for part in self._parts for route in part.routes()]
