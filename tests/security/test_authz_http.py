"""The authorization matrix of the HTTP API: every route of the OpenAPI document the server
serves, tried without the API key, with a wrong one (as ``Authorization: Bearer`` and as
``X-Api-Key``) and with a client's token in its place; and every route that acts as a user
(``userId``), by a user who may not (not a member, not the owner, a chat not theirs).

Each must be refused with the code docs/http-api.md gives, change no stored row, and tell
nothing: a refusal for want of the key is the same bytes whatever the request names (so it
reveals no user, chat or group), and a chat that is not the user's reads like no chat at all.
A route added without an entry in ``EXPECT`` fails ``test_every_route_has_expectations``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from tests.databases import Databases
from tests.e2e.test_bad_input import WatchedServer
from tests.helpers import API_KEY, ServerProcess
from tests.security.world import SECRET, UNKNOWN, World, build, snapshot

# Per route: the request that would be done if allowed ("<alice>" and the like are filled in;
# "query" and "body" as the route reads them), and the refusals of an acting user who may not:
# scenario -> (what it changes in the request, the code). A public route has ``None``.
Cases = dict[str, tuple[dict[str, Any], int]]
Spec = tuple[dict[str, Any], Cases] | None
TEAM_FIELDS = {"teamName": "pwned", "memberIds": ["<mallory>"]}
NOT_MEMBER = ({"userId": "<mallory>", "teamId": "<team>"}, 403)
NOT_OWNER = ({"userId": "<mallory>", "teamId": "<shared>"}, 403)
NO_LONGER = ({"userId": "<mallory>", "teamId": "<former>"}, 403)  # removed from it
EXPECT: dict[str, Spec] = {
    "POST /api/v1/users": ({"body": {"username": "intruder"}}, {}),
    "GET /api/v1/users": ({}, {}),
    "GET /api/v1/users/{userId}": ({}, {}),
    "PATCH /api/v1/users/{userId}": ({"body": {"username": "pwned"}}, {}),
    "DELETE /api/v1/users/{userId}": ({}, {}),
    "POST /api/v1/tokens": ({"body": {"userId": "<alice>"}}, {}),
    "GET /api/v1/online": ({}, {}),
    "GET /api/v1/users/{userId}/online": ({}, {}),
    "GET /api/v1/users/{userId}/conversations": ({}, {}),
    "GET /api/v1/users/{userId}/unread": ({}, {}),
    "GET /api/v1/users/{userId}/history": (
        {"query": {"chatId": "<chat>"}},
        {
            "chat": ({"path": "<mallory>", "query": {"chatId": "<chat>"}}, 404),
            "team": ({"path": "<mallory>", "query": {"teamId": "<team>"}}, 403),
        },
    ),
    "POST /api/v1/notices": ({"body": {"toUserIds": ["<alice>"], "body": "n"}}, {}),
    "POST /api/v1/teams/{teamId}/notices": ({"body": {"body": "n"}}, {}),
    "POST /api/v1/notices/online": ({"body": {"body": "n"}}, {}),
    "POST /api/v1/system-messages": ({"body": {"chatId": "<chat>", "body": "s"}}, {}),
    "POST /api/v1/teams/create": (
        {"body": {"userId": "<mallory>", "teamName": "x", "memberIds": ["<alice>", "<bob>"]}},
        {},  # anyone may create a group
    ),
    "POST /api/v1/teams/add": (
        {"body": {"userId": "<mallory>", "teamId": "<team>", "memberIds": ["<mallory>"]}},
        {"team": NOT_MEMBER, "shared": NOT_OWNER, "former": NO_LONGER},
    ),
    "POST /api/v1/teams/remove": (
        {"body": {"userId": "<mallory>", "teamId": "<team>", "memberIds": ["<bob>"]}},
        {"team": NOT_MEMBER, "shared": NOT_OWNER, "former": NO_LONGER},
    ),
    "POST /api/v1/teams/leave": (
        {"body": {"userId": "<mallory>", "teamId": "<team>"}},
        {"team": NOT_MEMBER, "former": NO_LONGER},
    ),
    "POST /api/v1/teams/rename": (
        {"body": {"userId": "<mallory>", "teamId": "<team>", "teamName": "pwned"}},
        {"team": NOT_MEMBER, "former": NO_LONGER},
    ),
    "POST /api/v1/teams/dismiss": (
        {"body": {"userId": "<mallory>", "teamId": "<team>"}},
        {"team": NOT_MEMBER, "shared": NOT_OWNER, "former": NO_LONGER},
    ),
    "POST /api/v1/teams/info": (
        {"body": {"userId": "<mallory>", "teamId": "<team>"}},
        {"team": NOT_MEMBER, "former": NO_LONGER},
    ),
    "GET /api/v1/teams/{teamId}": ({}, {}),
    "GET /api/v1/openapi.json": None,
    "GET /docs": None,
}
REFUSED = {"code": 401, "reason": "missing or wrong API key"}
# Public routes outside the document (operations, the browser client): nothing of anyone.
UNDOCUMENTED = ["/healthz", "/readyz", "/metrics", "/", "/app/main.js"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[WatchedServer]:
    proc = WatchedServer(tmp_path_factory.mktemp("authz-http"), databases)
    yield proc
    proc.stop()


def routes(server: ServerProcess) -> dict[str, dict[str, Any]]:
    """``"METHOD /path"`` -> its operation, for every route of the served document."""
    doc = requests.get(server.url + "/api/v1/openapi.json", timeout=10).json()
    return {f"{m.upper()} {p}": op for p, ops in doc["paths"].items() for m, op in ops.items()}


def test_every_route_has_expectations(server: WatchedServer) -> None:
    served = routes(server)
    missing = sorted(set(served) - set(EXPECT))
    assert not missing, f"add the authorization expectations of {missing} to EXPECT"
    assert not set(EXPECT) - set(served), "EXPECT names routes the server no longer has"
    for name, op in served.items():  # public exactly when the document says so
        assert (EXPECT[name] is None) == (not op.get("security")), name


def filled(value: Any, names: dict[str, int]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [filled(v, names) for v in value]
    if isinstance(value, dict):
        return {k: filled(v, names) for k, v in value.items()}
    return value


def names_of(w: World, unknown: bool = False) -> dict[str, int]:
    """What the placeholders stand for: the world's ids, or ids that name nothing."""
    known = {
        "<alice>": w.alice,
        "<bob>": w.bob,
        "<mallory>": w.mallory,
        "<chat>": w.chat,
        "<team>": w.team,
        "<shared>": w.shared,
        "<former>": w.former,
    }
    return {k: UNKNOWN + i for i, k in enumerate(known)} if unknown else known


async def call(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    route: str,
    request: dict[str, Any],
    names: dict[str, int],
    headers: dict[str, str],
) -> tuple[int, bytes]:
    method, template = route.split(" ", 1)
    path_id = filled(request.get("path", "<alice>"), names)
    path = template.replace("{userId}", str(path_id)).replace("{teamId}", str(names["<team>"]))
    body = filled(request.get("body"), names)
    query = {k: str(v) for k, v in filled(request.get("query", {}), names).items()}
    async with http.request(
        method,
        server.url + path,
        params=query,
        data=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    ) as resp:
        return resp.status, await resp.read()


async def test_every_route_refuses_who_may_not(server: WatchedServer) -> None:
    w = await build(server)
    token = server.token(w.mallory)
    intruders = {
        "no key": {},
        "a wrong key": {"Authorization": "Bearer " + API_KEY + "x"},
        "a wrong X-Api-Key": {"X-Api-Key": API_KEY[:-1]},
        "a client's token": {"Authorization": "Bearer " + token},
        "a token as X-Api-Key": {"X-Api-Key": token},
        "the key in another scheme": {"Authorization": "Basic " + API_KEY},
    }
    failures: list[str] = []
    before = snapshot(server)
    async with aiohttp.ClientSession() as http:
        for route, spec in EXPECT.items():
            if spec is None:
                status, body = await call(http, server, route, {}, names_of(w), {})
                if status != 200 or SECRET.encode() in body:
                    failures.append(f"{route} (public): {status} {body[:200]!r}")
                continue
            request, cases = spec
            for who, headers in intruders.items():
                # the same bytes whether the ids exist or not
                for unknown in (False, True) if who == "no key" else (False,):
                    status, body = await call(
                        http, server, route, request, names_of(w, unknown), headers
                    )
                    if status != 401 or json.loads(body) != REFUSED:
                        failures.append(f"{route} with {who}: {status} {body[:200]!r}")
            key = {"Authorization": "Bearer " + API_KEY}
            for case, (change, code) in cases.items():
                wanted = request | change
                status, body = await call(http, server, route, wanted, names_of(w), key)
                answer = json.loads(body)
                if status != code or answer.get("code") != code or SECRET.encode() in body:
                    failures.append(f"{route} on {case}: {status} {body[:200]!r}")
                if code == 404:  # not theirs reads exactly as none at all
                    names = names_of(w) | {"<chat>": UNKNOWN}
                    _, other = await call(http, server, route, wanted, names, key)
                    reason = json.loads(other)["reason"].replace(str(UNKNOWN), "N")
                    if reason != answer["reason"].replace(str(w.chat), "N"):
                        failures.append(f"{route} on {case} tells it exists: {body!r} {other!r}")
            assert snapshot(server) == before, f"{route} changed something"
        for path in UNDOCUMENTED:
            async with http.get(server.url + path) as resp:
                body = await resp.read()
                if resp.status != 200 or any(x in body for x in (SECRET.encode(), b"mallory")):
                    failures.append(f"GET {path} (public): {resp.status} {body[:200]!r}")
    assert not failures, "\n".join(failures)
    for client in w.online:  # nobody heard of any of it
        assert await client.silent(0.3)
        await client.close()
