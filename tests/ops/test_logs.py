"""Log lines: one JSON object per event when asked, naming the connection (id, user, remote
address); the HTTP access log only when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.helpers import API_KEY, ServerProcess, TcpClient
from tests.ops.watch import LoggedServer


@pytest.fixture
def server_class() -> type[ServerProcess]:
    return LoggedServer


async def test_a_connection_s_events_name_it_in_json(
    make_server: Callable[..., LoggedServer],
) -> None:
    srv = make_server(log_format="json", log_level="INFO")
    alice = await srv.add_user("alice")
    client = await srv.connect("tcp")
    assert isinstance(client, TcpClient)
    remote = f"127.0.0.1:{client.writer.get_extra_info('sockname')[1]}"
    await client.login(srv.token(alice))

    login = await srv.wait_for(lambda r: r["msg"] == "logged in")
    assert (login["level"], login["user"], login["remote"]) == ("INFO", alice, remote)
    assert login["logger"].startswith("imhub")
    assert login["time"].endswith("+00:00")
    conn = login["conn"]
    assert isinstance(conn, int) and conn > 0

    await client.close()
    closed = await srv.wait_for(lambda r: r["msg"] == "connection closed")
    assert closed["conn"] == conn and closed["user"] == alice and closed["remote"] == remote
    assert (closed["protocol"], closed["reason"]) == ("tcp", "closed by the peer")
    assert closed["seconds"] >= 0


async def test_a_refused_login_and_a_close_by_the_server_say_why(
    make_server: Callable[..., LoggedServer],
) -> None:
    srv = make_server(log_format="json", log_level="INFO")
    client = await srv.connect("ws")
    await client.send({"msgType": 1, "token": "not-a-token"})
    assert (await client.expect(8))["code"] == 401
    refused = await srv.wait_for(lambda r: r["msg"] == "login refused")
    assert refused["user"] is None and refused["reason"]
    closed = await srv.wait_for(lambda r: r["msg"] == "connection closed")
    assert closed["conn"] == refused["conn"] and closed["protocol"] == "websocket"
    assert closed["reason"].startswith("401 ")  # the refusal that ended it


async def _get(srv: ServerProcess, path: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(srv.url + path) as resp:
        return resp.status


async def _marker(srv: LoggedServer) -> dict[str, Any]:
    """A login: an event logged after every earlier request's lines (it takes the writer)."""
    user, client = await srv.online("marker")
    line = await srv.wait_for(lambda r: r["msg"] in ("logged in", "GET /healthz 200"))
    await client.close()
    return line


async def test_the_access_log_is_off_unless_configured(
    make_server: Callable[..., LoggedServer],
) -> None:
    quiet = make_server(log_format="json", log_level="INFO")
    assert await _get(quiet, "/healthz") == 200
    assert (await _marker(quiet))["msg"] == "logged in"  # no access line came before it

    loud = make_server(log_format="json", log_level="INFO", access_log="true")
    assert await _get(loud, "/healthz") == 200
    line = await loud.wait_for(lambda r: r["logger"] == "imhub.access")
    assert line["msg"] == "GET /healthz 200"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["remote"] == "127.0.0.1" and line["seconds"] >= 0


async def test_text_lines_carry_the_same_fields(make_server: Callable[..., LoggedServer]) -> None:
    srv = make_server(log_level="INFO")  # text, the default
    user, client = await srv.online("text")
    line = await srv.wait_for_text(" logged in ")
    assert " INFO imhub.service.login: logged in conn=" in line
    assert f" user={user} remote=127.0.0.1:" in line
    await client.close()
    line = await srv.wait_for_text("connection closed")
    assert 'reason="closed by the peer"' in line


async def test_a_peer_cannot_forge_a_text_line_nor_have_a_secret_logged(
    make_server: Callable[..., LoggedServer],
) -> None:
    """Found by an outside tester: a request path with an encoded newline wrote a second,
    forged line into the text log; a header too long to parse was quoted, API key and all, in
    the log and in the 400's reason."""
    srv = make_server(log_level="INFO", access_log="true")  # text, the default
    forged = "1999-01-01 08:00:00,000 ERROR imhub: forged"
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(f"GET /x%0a{forged.replace(' ', '%20')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await reader.read(65536)
    writer.close()
    line = await srv.wait_for_text("GET /x")
    assert "\\x0a1999-01-01" in line  # the newline is shown, not written
    # Nor can it send a terminal commands, in the message or in a field (path=).
    assert await _get(srv, "/y%1b%5b2K%e2%80%a8z") == 404
    line = await srv.wait_for_text("GET /y")
    assert "\x1b" not in line and "\u2028" not in line
    assert line.count("\\x1b[2K\\u2028z") == 0 and line.count("\\x1b[2K") == 2
    key = API_KEY
    headers = {"Authorization": "Bearer " + key + "x" * 9000}
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + "/healthz", headers=headers) as r,
    ):
        body = await r.text()
    assert r.status == 400 and key not in body
    line = await srv.wait_for_text("malformed HTTP request")
    assert key not in line
    await _marker_text(srv)
    assert [seen for seen in srv.seen if seen.startswith("1999")] == []
    assert [seen for seen in srv.seen if key in seen] == []


async def _marker_text(srv: LoggedServer) -> None:
    """A login, logged after every earlier request's lines."""
    _, client = await srv.online("marker")
    await srv.wait_for_text(" logged in ")
    await client.close()
