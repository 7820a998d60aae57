"""JSON responses of the HTTP side: every error is ``{"code": N, "reason": "…"}`` with status N,
whoever builds it (a route, the gateway's deadlines, a malformed request)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from imhub.protocol import codec


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=codec.encode_json(value), status=status, content_type="application/json"
    )


def error_response(status: int, reason: str) -> web.Response:
    # A reason may quote what a peer sent (a request path): characters that have no UTF-8
    # form (aiohttp keeps undecodable bytes as surrogates) are written as escapes.
    readable = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    return json_response({"code": status, "reason": readable}, status)
