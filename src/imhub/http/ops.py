"""Routes for operators and probes: ``/healthz`` (the process is alive and serving)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from imhub.http.responses import json_response
from imhub.http.routes import Params, Route


class Ops:
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    async def healthz(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        return json_response({"status": "ok", **self._stats()})

    def routes(self) -> list[Route]:
        return [Route("GET", "/healthz", self.healthz, "Alive", api_key=False, tag="ops")]
