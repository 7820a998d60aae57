"""Routes for operators and probes, without the API key (like most probes and scrapers, they
carry none): ``/healthz`` (the process is alive and serving), ``/readyz`` (it can do its work:
the database answers and it is not shutting down; 503 otherwise) and ``/metrics``
(Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from imhub.http.responses import error_response, json_response
from imhub.http.routes import Params, Route
from imhub.metrics import Metrics
from imhub.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

SHUTTING_DOWN = "server is shutting down"


class Ops:
    def __init__(
        self,
        stats: Callable[[], dict[str, int]],
        problem: Callable[[], Awaitable[str | None]],
        metrics: Metrics,
        degraded: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._degraded = degraded  # ready, but not all of it works (a cluster without Redis)
        self._stats = stats
        self._problem = problem  # None when ready, else why not
        self._metrics = metrics
        self._was_ready = True  # logged when it changes, not at every probe

    async def healthz(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        return json_response({"status": "ok", **self._stats()})

    async def readyz(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        problem = await self._problem()
        if (problem is None) != self._was_ready:
            self._was_ready = problem is None
            if problem is None:
                log.info("ready again")
            else:  # a shutdown is no surprise; anything else is
                log.log(
                    logging.INFO if problem == SHUTTING_DOWN else logging.WARNING,
                    "not ready: %s",
                    problem,
                )
        if problem is not None:
            return error_response(ErrorCode.SHUTTING_DOWN, problem)
        degraded = self._degraded()
        if degraded is not None:
            return json_response({"status": "ready", "degraded": degraded})
        return json_response({"status": "ready"})

    async def metrics(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        return web.Response(
            body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/healthz", self.healthz, "Alive", api_key=False, tag="ops"),
            Route("GET", "/readyz", self.readyz, "Ready for traffic", api_key=False, tag="ops"),
            Route("GET", "/metrics", self.metrics, "Prometheus metrics", api_key=False, tag="ops"),
        ]
