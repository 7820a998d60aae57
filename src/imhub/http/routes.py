"""The HTTP side's routes: each one declared once, with what the OpenAPI document needs.

A ``Route`` names its method, a path template (``/api/v1/users/{user_id}``), its handler, and
the typed bodies it reads and answers (msgspec structs), so that the document served at
``/api/v1/openapi.json`` is generated from the same declarations the server runs. ``Router``
finds the route for a request: path parameters are matched by template, a path known for
other methods is a 405, anything else a 404; every error is JSON ``{"code", "reason"}``.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from imhub.http.responses import error_response
from imhub.protocol.errors import ErrorCode, ImError
from imhub.service.limits import Limits, retry_after
from imhub.storage.outage import UNAVAILABLE, OutageLog

log = logging.getLogger(__name__)

Params = dict[str, str]
Handler = Callable[[web.BaseRequest, Params], Awaitable[web.StreamResponse]]
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a template: "{name}" matches one path segment
    handler: Handler
    summary: str = ""
    body: type[Any] | None = None  # the request body's struct
    answer: type[Any] | None = None  # the response body's struct (None: not JSON, or empty)
    status: int = 200
    query: type[Any] | None = None  # a struct of the query parameters
    api_key: bool = True  # needs the API key
    tag: str = "api"
    errors: tuple[int, ...] = ()  # statuses it may answer besides 400/401/500
    params: type[Any] | None = None  # a struct of the path parameters (default: strings)
    description: str = ""  # more than the summary, for the documentation (Markdown)
    media: str = "application/json"  # the content type of a successful answer
    message: bool = False  # its body carries a message: at most --max-frame bytes
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = _PARAM.split(self.path)  # literal, name, literal, name, …
        regex = "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)
        )
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


class Router:
    def __init__(
        self,
        routes: Sequence[Route],
        api_key: str,
        limits: Limits | None = None,
        max_frame: int = 0,
    ) -> None:
        self.routes = list(routes)
        self._api_key = api_key.encode()
        self._limits = limits  # None: no rate limit per key
        self._max_frame = max_frame  # 0: no limit of its own (aiohttp's body limit)
        self._exact = {(r.method, r.path): r for r in self.routes if "{" not in r.path}
        self._outage = OutageLog(log)

    def find(self, method: str, path: str) -> tuple[Route, Params]:
        """The route for ``method path`` and its path parameters; raises ``ImError`` 404 or
        405 (``web.HTTPMethodNotAllowed``). HEAD is GET without the body (RFC 9110, 9.3.2:
        aiohttp leaves the body out)."""
        if method == "HEAD":
            method = "GET"
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        # A path written out for other methods is theirs, not a template's value
        # (POST /teams/create is not GET /teams/{teamId} with teamId "create").
        allowed = [m for m, p in self._exact if p == path]
        if allowed:
            raise web.HTTPMethodNotAllowed(method, allowed)
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            if route.method == method:
                return route, m.groupdict()
            allowed.append(route.method)
        if allowed:
            raise web.HTTPMethodNotAllowed(method, allowed)
        raise ImError(ErrorCode.NOT_FOUND, f"no route {path}")

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if self._limits is not None and not self.keyed(request):
                # Without the key (public routes, no key, a wrong one): a budget per address.
                wait = self._limits.http_request(request.remote)
                if wait:
                    response = error_response(
                        ErrorCode.TOO_MANY, "too many requests from this address: slow down"
                    )
                    response.headers["Retry-After"] = retry_after(wait)
                    # And the connection ends: requests pipelined behind it would each cost a
                    # parse for another 429; a new connection costs one of the address's few.
                    response.force_close()
                    return response
            route, params = self.find(request.method, request.path)
            if route.api_key:
                self.authorize(request)
                if self._limits is not None:
                    wait = self._limits.api_request(self._api_key.decode())
                    if wait:
                        response = error_response(
                            ErrorCode.TOO_MANY, "too many requests for this API key: slow down"
                        )
                        response.headers["Retry-After"] = retry_after(wait)
                        return response
            if route.message and self._max_frame:
                size = len(await request.read())  # read already, in time, by the gateway
                if size > self._max_frame:
                    raise ImError(
                        ErrorCode.TOO_LARGE,
                        f"a message of {size} bytes is over the limit of {self._max_frame}",
                    )
            return await route.handler(request, params)
        except ImError as exc:
            return error_response(exc.code, exc.reason)
        except web.HTTPException as exc:
            response = error_response(exc.status, exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the path has
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception as exc:  # the caller still gets JSON
            if self._outage.note(exc):  # the database is away: one line now and then
                return error_response(ErrorCode.INTERNAL, UNAVAILABLE)
            log.exception("%s %s failed", request.method, request.path)  # a bug: traceback
            return error_response(ErrorCode.INTERNAL, "internal error")

    def authorize(self, request: web.BaseRequest) -> None:
        """The API key, as ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY``; raises
        ``ImError`` 401 without it."""
        if not self.keyed(request):
            raise ImError(ErrorCode.UNAUTHORIZED, "missing or wrong API key")

    def keyed(self, request: web.BaseRequest) -> bool:
        """The request carries the API key."""
        given = request.headers.get("X-Api-Key", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        # Header bytes that are not UTF-8 arrive as surrogates: compared as the bytes they were.
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._api_key)
