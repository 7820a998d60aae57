"""What the server keeps for one connection is bounded in bytes (``--max-outbound``, 1 MiB by
default), not in a count of messages: live messages held during an unfinished sync, a login
backlog of any size, sync and history pages."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.test_sync import sync_all
from tests.helpers import ServerProcess, TcpClient

LIMIT = 1024 * 1024  # the default --max-outbound
BIG = "y" * 48_000


async def send_many(a: Any, to: int, count: int, prefix: str) -> None:
    """Send ``count`` big messages and wait until all are stored."""
    for i in range(count):
        await a.send({"msgType": 3, "toUserId": to, "msgIdClient": f"{prefix}{i}", "body": BIG})
    for _ in range(count):
        assert (await a.expect(4))["code"] == 0


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_sync_never_finished_is_dropped_past_the_byte_limit(
    server: ServerProcess, via: str
) -> None:
    """The reproduction: sync with limit 1, get more:true, never ask again. Live messages wait
    for the sync to end; 40 of 48 KB (about 2 MB, far below any count limit) pass the byte
    limit, so the connection is told (429) and dropped. Nothing is lost: all is stored."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    for i in range(2):
        await a.chat(bob, f"pre{i}", "x")
    b = await server.connect(via)
    await b.send({"msgType": 1, "token": server.token(bob), "backlog": False})
    await b.expect(1)
    await b.send({"msgType": 11, "convs": [], "limit": 1})
    assert (await b.expect(11))["more"] is True

    await send_many(a, bob, 40, "m")
    error = await b.expect(8)
    assert error["code"] == 429
    assert await b.closed()

    again = await server.connect(via)
    await again.send({"msgType": 1, "token": server.token(bob), "backlog": False})
    await again.expect(1)
    got, _convs, _pages = await sync_all(again, None, 500)
    assert [m["seq"] for m in got] == list(range(1, 43))


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_login_backlog_far_over_the_limit_arrives_whole(
    server: ServerProcess, via: str
) -> None:
    """10 MB waiting for an offline user: the login writes it as the client takes it, instead
    of reading it all at once and dropping the client for not taking it fast enough."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    await send_many(a, bob, 200, "m")
    b = await server.connect(via)
    login = await b.login(server.token(bob))
    assert login["unread"][0]["count"] == 200
    backlog = [await b.expect(7) for _ in range(200)]
    assert [m["seq"] for m in backlog] == list(range(1, 201))
    await b.send({"msgType": 0})
    assert (await b.expect(0))["code"] == 0  # and the connection is live


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_sync_and_history_pages_are_bounded_in_bytes(server: ServerProcess, via: str) -> None:
    """A page stops at half the byte limit whatever its ``limit``; ``more`` says the rest
    follows, and paging on gives everything once, in order."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    await send_many(a, bob, 30, "m")
    b = await server.connect(via)
    await b.send({"msgType": 1, "token": server.token(bob), "backlog": False})
    chat = (await b.expect(1))["unread"][0]["chatId"]

    seqs: list[int] = []
    convs: list[dict[str, int]] = []
    while True:
        await b.send({"msgType": 11, "convs": convs, "limit": 500})
        page = await b.expect(11)
        assert len(json.dumps(page)) <= LIMIT // 2 + 64 * 1024
        assert page["messages"]  # each page carries something
        seqs += [m["seq"] for m in page["messages"]]
        convs = [{"chatId": chat, "seq": seqs[-1]}]
        if not page["more"]:
            break
    assert seqs == list(range(1, 31))

    history: list[int] = []
    request: dict[str, Any] = {"msgType": 14, "chatId": chat, "limit": 500}
    while True:
        await b.send(request)
        page = await b.expect(14)
        assert len(json.dumps(page)) <= LIMIT // 2 + 64 * 1024
        history = [m["seq"] for m in page["messages"]] + history
        if not page["more"]:
            break
        request["beforeSeq"] = page["messages"][0]["seq"]
    assert history == list(range(1, 31))


async def test_a_login_backlog_with_a_small_limit_waits_for_the_reader(
    make_server: Callable[..., ServerProcess],
) -> None:
    """With a 64 KiB limit (below the transport's usual 64 KiB high-water mark plus a message)
    and a receive buffer of 4 KiB, 6 MB of backlog (more than the kernel's socket buffers take
    at once, 4 MB at most here) still arrives whole: the server writes a message only when the
    client has taken most of the last ones."""
    srv = make_server(max_outbound=64 * 1024)
    _alice, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    for i in range(300):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": "z" * 20_000})
    for _ in range(300):
        assert (await a.expect(4))["code"] == 0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    b = TcpClient(*await asyncio.open_connection(sock=sock))
    await b.login(srv.token(bob))
    assert [(await b.expect(7))["seq"] for _ in range(300)] == list(range(1, 301))


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_message_larger_than_max_outbound_reaches_its_reader(
    make_server: Callable[..., ServerProcess], via: str
) -> None:
    """Found by an outside tester: with --max-frame raised past --max-outbound, one large
    message made its reader a slow consumer: dropped at once, and at every login, sync and
    history after it, for good. A connection now holds at least two of the largest messages
    the server accepts."""
    srv = make_server(max_frame=2 * 1024 * 1024, max_outbound=256 * 1024)
    _alice, a = await srv.online("alice")
    bob, b = await srv.online("bob", via)
    carol = await srv.add_user("carol")
    huge = "h" * (1536 * 1024)  # 1.5 MiB: six times what one connection is allowed to hold
    sent = await a.chat(bob, "huge", huge)
    assert (await b.expect(7))["body"] == huge
    await a.chat(bob, "after", "small")
    assert (await b.expect(7))["body"] == "small"
    await a.chat(carol, "huge-for-carol", huge)

    c = await srv.connect(via)
    await c.login(srv.token(carol))
    assert (await c.expect(7))["body"] == huge  # the login backlog
    await b.send({"msgType": 14, "chatId": sent["chatId"]})
    history = await b.answer(14)
    assert [m["body"] for m in history["messages"]] == [huge, "small"]
    await b.send({"msgType": 11, "convs": [{"chatId": sent["chatId"], "seq": 0}]})
    page = await b.answer(11)
    assert [m["body"] for m in page["messages"]][:1] == [huge]
    for conn in (b, c):  # both still served
        await conn.send({"msgType": 15})
        assert (await conn.answer(15))["code"] == 0
