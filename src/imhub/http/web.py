"""The browser client's files, served as they are (no build step): ``/`` is its page and
``/app/NAME`` its modules and styles, from the ``imhub/web`` package folder."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from imhub.http.routes import Params, Route
from imhub.protocol.errors import ErrorCode, ImError

FOLDER = Path(__file__).resolve().parent.parent / "web"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # one file of the folder, no dot-files


def _file(name: str) -> web.StreamResponse:
    path = FOLDER / name
    kind = TYPES.get(path.suffix)
    if not _NAME.match(name) or kind is None or not path.is_file():
        raise ImError(ErrorCode.NOT_FOUND, f"no file {name}")
    return web.Response(
        body=path.read_bytes(),
        content_type=kind,
        charset="utf-8" if kind.startswith("text/") else None,
        headers={"Cache-Control": "no-cache"},
    )


async def index(request: web.BaseRequest, params: Params) -> web.StreamResponse:
    return _file("index.html")


async def asset(request: web.BaseRequest, params: Params) -> web.StreamResponse:
    return _file(params["name"])


def web_routes() -> list[Route]:
    return [
        Route("GET", "/", index, "The browser chat client", api_key=False, tag="web"),
        Route("GET", "/app/{name}", asset, "The browser client's files", api_key=False, tag="web"),
    ]
