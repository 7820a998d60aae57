"""The OpenAPI document and the page made from it, and the JSON errors of requests no route
takes (an unknown path, a wrong method, ``/ws`` without a WebSocket handshake)."""

from __future__ import annotations

import html

import aiohttp
import msgspec

from imhub.http.models import Page, TokenAnswer, TokenRequest, UserPath
from imhub.http.openapi import document
from imhub.http.routes import Params, Route
from tests.helpers import ServerProcess


async def _unused(request: object, params: Params) -> aiohttp.web.StreamResponse:
    raise AssertionError("never called")


def test_the_document_comes_from_the_declarations() -> None:
    routes = [
        Route("POST", "/api/v1/users/{userId}/things", _unused, "Do", TokenRequest, TokenAnswer,
              params=UserPath, query=Page, errors=(404,), tag="users", description="Why."),
        Route("GET", "/api/v1/public", _unused, "Public", api_key=False, tag="docs"),
        Route("GET", "/healthz", _unused, "Not the API's", api_key=False, tag="ops"),
    ]  # fmt: skip
    doc = document(routes, "9")
    assert doc["openapi"] == "3.1.0" and set(doc["paths"]) == {
        "/api/v1/users/{userId}/things",
        "/api/v1/public",
    }
    op = doc["paths"]["/api/v1/users/{userId}/things"]["post"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["userId"] == {
        "name": "userId",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1},
    }
    assert params["limit"]["in"] == "query" and params["limit"]["required"] is False
    assert params["limit"]["schema"]["maximum"] == 500
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenRequest"
    }
    assert sorted(op["responses"]) == [
        *("200", "400", "401", "404", "408", "413", "429", "500", "503")
    ]
    error = op["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert op["security"] and op["description"] == "Why."
    schemas = doc["components"]["schemas"]
    alone = msgspec.json.schema(TokenRequest)
    assert schemas["TokenRequest"] == alone["$defs"]["TokenRequest"]  # msgspec's own schema
    assert schemas["ErrorBody"]["required"] == ["code", "reason"]
    public = doc["paths"]["/api/v1/public"]["get"]
    assert public["security"] == [] and sorted(public["responses"]) == ["200", "400", "500"]


async def get(server: ServerProcess, path: str, method: str = "GET") -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path) as resp:
        await resp.read()
        return resp


async def test_the_served_document_and_its_page(server: ServerProcess) -> None:
    status, doc = await server.call("GET", "/api/v1/openapi.json", api_key=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    ops = [(m, p, op) for p, ms in doc["paths"].items() for m, op in ms.items()]
    assert len(ops) >= 25
    for method, path, op in ops:
        assert {"400", "500"} <= set(op["responses"]), (method, path)
        if op["security"]:
            assert "401" in op["responses"], (method, path)
    assert ("delete", "/api/v1/users/{userId}") in [(m, p) for m, p, _ in ops]

    resp = await get(server, "/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    async with aiohttp.ClientSession() as http, http.get(server.url + "/docs") as r:
        page = await r.text()
    for _, path, op in ops:  # every operation, with its summary
        assert f"<code>{path}</code>" in page and html.escape(op["summary"]) in page, path
    # Self-contained: nothing to fetch from elsewhere.
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<link" not in page and "@import" not in page


async def test_requests_no_route_takes_get_json_errors(server: ServerProcess) -> None:
    status, body = await server.call("GET", "/api/v1/nothing-here")
    assert status == 404 and body == {"code": 404, "reason": "no route /api/v1/nothing-here"}
    resp = await get(server, "/api/v1/users/1", "PUT")
    assert resp.status == 405 and resp.content_type == "application/json"
    assert set(resp.headers["Allow"].split(",")) == {"GET", "PATCH", "DELETE"}

    resp = await get(server, "/ws")  # a plain GET: no WebSocket handshake
    assert resp.status == 426 and resp.headers["Upgrade"] == "websocket"
    status, body = await server.call("GET", "/ws")
    assert status == 426 and body["code"] == 426 and "Upgrade: websocket" in body["reason"]
    status, body = await server.call("POST", "/ws", {"msgType": 1})
    assert status == 405 and body["code"] == 405
    resp = await get(server, "/ws", "POST")
    assert resp.headers["Allow"] == "GET"
