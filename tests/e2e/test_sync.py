"""History pages and sync after reconnect: everything missed, once, in order, in pages."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.test_groups import make_group
from tests.helpers import Client, ServerProcess


async def sync_all(
    c: Client, convs: list[dict[str, int]] | None, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Sync page by page; returns (page messages, final conv states, pages)."""
    got: list[dict[str, Any]] = []
    cursors = {(k, v): s for conv in convs or [] for k, v, s in [_cursor(conv)]}
    pages = 0
    while True:
        request: dict[str, Any] = {"msgType": 11, "limit": limit}
        if convs is not None:
            request["convs"] = [{k: v, "seq": s} for (k, v), s in cursors.items()]
        await c.send(request)
        page = await c.expect(11)
        pages += 1
        assert len(page["messages"]) <= limit
        for m in page["messages"]:
            key = ("teamId", m["teamId"]) if "teamId" in m else ("chatId", m["chatId"])
            cursors[key] = m["seq"]
            got.append(m)
        if not page["more"]:
            return got, page["convs"], pages
        assert "convs" not in page
        convs = []  # from now on name what was received; the rest starts at the read position


def _cursor(conv: dict[str, int]) -> tuple[str, int, int]:
    key = "teamId" if "teamId" in conv else "chatId"
    return key, conv[key], conv["seq"]


async def test_history_pages(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    chat = 0
    for i in range(25):
        chat = (await a.chat(bob, f"m{i}", str(i)))["chatId"]
    pages = []
    before = None
    while True:
        request: dict[str, Any] = {"msgType": 14, "chatId": chat, "limit": 10}
        if before is not None:
            request["beforeSeq"] = before
        await a.send(request)
        page = await a.expect(14)
        pages.append([m["seq"] for m in page["messages"]])
        if not page["more"]:
            break
        before = page["messages"][0]["seq"]
    assert pages == [list(range(16, 26)), list(range(6, 16)), list(range(1, 6))]
    await a.send({"msgType": 14, "chatId": chat, "limit": 1, "msgIdClient": "req-1"})
    assert (await a.expect(14))["msgIdClient"] == "req-1"  # answers name their request
    outsider, x = await server.online("outsider")
    await x.send({"msgType": 14, "chatId": chat, "msgIdClient": "req-2"})
    err = await x.expect(8)
    assert err["code"] == 404 and err["msgIdClient"] == "req-2"


async def test_member_offline_during_500_messages_syncs_them_once_in_order(
    server: ServerProcess,
) -> None:
    owner, o = await server.online("owner")
    away, other = await server.add_user("away"), await server.add_user("other")
    team = (await make_group(server, o, owner, [away, other]))["teamId"]
    for i in range(500):
        await o.send({"msgType": 3, "teamId": team, "msgIdClient": f"g{i}", "body": str(i)})
    for _ in range(500):
        await o.expect(4)

    c = await server.connect("tcp")
    await c.send({"msgType": 1, "token": server.token(away), "backlog": False})
    assert {"teamId": team, "count": 500} in (await c.expect(1))["unread"]
    got, states, pages = await sync_all(c, [{"teamId": team, "seq": 1}], limit=100)
    assert [m["body"] for m in got] == [str(i) for i in range(500)]
    assert [m["seq"] for m in got] == list(range(2, 502))
    assert all(m["msgType"] == 3 for m in got)
    assert pages == 5  # full pages; the last one says nothing more follows
    state = next(s for s in states if s.get("teamId") == team)
    assert state["lastSeq"] == 501 and state["unread"] == 500
    assert await c.silent()


async def test_sync_racing_live_messages(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    first = await a.chat(bob, "m0", "0")
    chat = first["chatId"]
    for i in range(1, 300):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": str(i)})

    b = await server.connect("tcp")
    await b.send({"msgType": 1, "token": server.token(bob), "backlog": False})
    await b.expect(1)
    seen: list[int] = []

    async def keep_sending() -> None:
        for i in range(300, 600):
            await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": str(i)})

    sender = asyncio.create_task(keep_sending())
    got, _, _ = await sync_all(b, [{"chatId": chat, "seq": 0}], limit=50)
    seen.extend(m["seq"] for m in got)
    await sender
    while len(seen) < 600:  # whatever the pages did not carry arrives live, after them
        msg = await b.recv()
        if msg["msgType"] in (3, 7):
            seen.append(msg["seq"])
    assert seen == list(range(1, 601))
    assert await b.silent()


async def test_sync_without_positions_starts_from_the_read_position(
    server: ServerProcess,
) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    chat = (await a.chat(bob, "m1", "read"))["chatId"]
    await b.expect(7)
    await b.send({"msgType": 12, "chatId": chat, "seq": 1})
    await b.expect(12)
    await a.chat(bob, "m2", "unread")
    await b.expect(7)
    got, states, _ = await sync_all(b, None, limit=10)
    assert [m["body"] for m in got] == ["unread"]
    state = next(s for s in states if s.get("chatId") == chat)
    assert state == {
        "chatId": chat,
        "peerUserId": alice,
        "lastSeq": 2,
        "readSeq": 1,
        "peerReadSeq": 0,  # alice sent both; sending is not reading
        "unread": 1,
    }


async def test_sync_refuses_only_the_conversations_that_are_not_yours(
    server: ServerProcess,
) -> None:
    """Issue 9: a sync that names a conversation the user may not see answers for the others
    all the same, and lists the refused ones."""
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    chat = (await a.chat(bob, "m1", "x"))["chatId"]
    outsider, x = await server.online("outsider")
    mine = (await x.chat(alice, "o1", "hello alice"))["chatId"]
    await x.send(
        {
            "msgType": 11,
            "convs": [{"chatId": chat, "seq": 0}, {"chatId": mine, "seq": 0}, {"teamId": 10**12}],
        }
    )
    page = await x.expect(11)
    assert page["code"] == 0 and [m["chatId"] for m in page["messages"]] == [mine]
    assert page["refused"] == [{"chatId": chat}, {"teamId": 10**12}]
    assert [c["chatId"] for c in page["convs"]] == [mine]
    await x.send({"msgType": 0})  # nothing is left held: the connection goes on
    await x.expect(0)
    assert outsider != alice


async def test_unnamed_conversations_start_from_the_read_position(
    server: ServerProcess,
) -> None:
    """A second page names only what the first carried; the others still come."""
    owner, o = await server.online("owner")
    bob = await server.add_user("bob")
    chats = [await server.add_user(f"p{i}") for i in range(3)]
    for peer in chats:  # three chats with bob, three unread messages each
        pc = await server.connect("tcp")
        await pc.login(server.token(peer))
        for i in range(3):
            await pc.chat(bob, f"{peer}-{i}", f"{peer}:{i}")
    b = await server.connect("tcp")
    await b.send({"msgType": 1, "token": server.token(bob), "backlog": False})
    await b.expect(1)
    got, states, pages = await sync_all(b, None, limit=4)
    assert sorted(m["body"] for m in got) == sorted(f"{p}:{i}" for p in chats for i in range(3))
    assert pages == 3
    assert len(states) == 3 and owner not in [s.get("peerUserId") for s in states]
