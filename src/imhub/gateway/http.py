"""HTTP connections: aiohttp's request handler, with our deadline and our error bodies.

A connection is HTTP from its first byte (see ``listener``); from then on aiohttp parses it.
Two things differ from aiohttp's defaults, because anyone can connect:

- a request's head must arrive within the login timeout (the gateway sets aiohttp's
  keep-alive timeout to it, which closes a connection whose next request is not complete in
  time, however slowly its bytes trickle in), as a socket must log in within it;
- a malformed request gets a JSON 400 like every other error, and costs at most one log line
  at INFO, rate limited (aiohttp logs each one as an ERROR with a traceback, so a peer could
  flood the log at will).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from imhub.http.responses import error_response
from imhub.logs import LogLimiter
from imhub.metrics import HTTP, Metrics
from imhub.protocol.errors import ErrorCode

log = logging.getLogger(__name__)
_QUOTED_BYTES = re.compile(r""":?\s*b['"]""")


class HttpConnection(RequestHandler):
    __slots__ = ("_limiter", "_peer", "_quiet", "_release", "_stats", "upgraded")

    def __init__(
        self,
        manager: web.Server,
        limiter: LogLimiter,
        stats: Metrics,
        release: Callable[[object], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limiter = limiter
        self._release = release  # the connection limits' count of it
        self._quiet = False
        self._stats = stats
        self.upgraded = False  # to WebSocket: counted as such from then on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stats.opened[HTTP] += 1
        self._peer = transport.get_extra_info("peername")
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.upgraded:
            self._stats.closed[HTTP] += 1
        self._release(self._peer)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (``exc`` is then the parser's
        error) or whose handler failed; it closes the connection after it."""
        if isinstance(exc, HttpProcessingError):  # the peer's fault, not ours
            # aiohttp's message is a line, then the bytes it choked on: keep the line.
            detail = (exc.message or "").strip().split("\n", 1)[0]
            # Not the bytes it choked on: they may be a header's secret (an API key).
            detail = _QUOTED_BYTES.split(detail, maxsplit=1)[0].rstrip(": ")[:200]
            reason = f"malformed HTTP request: {detail or 'bad request'}"
            dropped = self._limiter.allow()
            if dropped is not None:
                more = f" ({dropped} more not logged)" if dropped else ""
                log.info("malformed HTTP request from %s: %s%s", request.remote, detail, more)
            self._quiet = True  # nor an access log line for it
        elif isinstance(exc, ConnectionError):
            # The peer hung up before its answer was written (a WebSocket handshake half-closed
            # at once): nobody's bug, and nobody to answer. Not a traceback in the log.
            log.debug("HTTP request from %s: the peer is gone (%s)", request.remote, exc)
            self._quiet = True
            response = error_response(ErrorCode.INTERNAL, "the peer is gone")
            response.force_close()
            return response  # its write fails quietly (aiohttp's finish_response)
        else:
            reason = "internal error" if status == 500 else HTTPStatus(status).phrase.lower()
            log.error("HTTP request from %s failed", request.remote, exc_info=exc)
        if request.writer.output_size > 0:  # as aiohttp: too late for an error response
            raise ConnectionError("the response was sent already")
        self._stats.error(status, "http")
        response = error_response(status, reason)
        response.force_close()
        return response

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        if not self._quiet:
            super().log_access(request, response, time)
