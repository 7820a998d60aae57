"""Notices to a group and to everyone online, and system messages into a chat or a group:
what arrives live, what waits for a login, what history and unread counts show."""

from __future__ import annotations

from collections.abc import Callable

from tests.helpers import ServerProcess


async def test_a_notice_to_a_group_reaches_its_members(server: ServerProcess) -> None:
    owner, o = await server.online("owner", "tcp")
    member, m = await server.online("member", "ws")
    away = await server.add_user("away")
    outsider, x = await server.online("outsider")
    status, team = await server.call(
        "POST",
        "/api/v1/teams/create",
        {"userId": owner, "teamName": "ops", "memberIds": [member, away]},
    )
    assert status == 200
    for conn in (o, m):  # made over HTTP: every member's connections get the event
        assert (await conn.expect(16))["teamId"] == team["teamId"]
    tid = team["teamId"]
    status, sent = await server.call("POST", f"/api/v1/teams/{tid}/notices", {"body": "deploy"})
    assert status == 200, sent
    assert sent["delivered"] == sorted([owner, member]) and sent["pending"] == [away]
    for conn in (o, m):
        got = await conn.expect(7)
        assert got["noticeId"] == sent["noticeId"] and got["body"] == "deploy"
        assert got["fromUserId"] == 0 and got["bodyType"] == 8
    assert await x.silent()
    late = await server.connect("tcp")
    await late.login(server.token(away))
    assert (await late.expect(16))["seq"] == 1  # the group's backlog, then the notice
    assert (await late.expect(7))["noticeId"] == sent["noticeId"]
    status, body = await server.call("POST", "/api/v1/teams/999999999/notices", {"body": "x"})
    assert status == 404 and body["reason"] == "no group 999999999"


async def test_a_notice_to_everyone_online(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    a, ca = await srv.online("a", "tcp")
    b, cb = await srv.online("b", "ws")
    off = await srv.add_user("off")
    status, sent = await srv.call("POST", "/api/v1/notices/online", {"body": "all", "bodyType": 7})
    assert status == 200, sent
    assert sent["delivered"] == [a, b] and sent["pending"] == []
    for conn in (ca, cb):
        got = await conn.expect(7)
        assert got["noticeId"] == sent["noticeId"] and got["body"] == "all" and got["bodyType"] == 7
    late = await srv.connect("ws")  # it was for those online then: nothing waits for others
    await late.login(srv.token(off))
    assert await late.silent()
    assert srv.count("select count(*) from notice_target where to_user_id=?", off) == 0


async def test_a_system_message_in_a_chat_live_in_history_and_unread(server: ServerProcess) -> None:
    alice, a = await server.online("alice", "tcp")
    bob, b = await server.online("bob", "ws")
    chat = (await a.chat(bob, "first", "hi"))["chatId"]
    assert (await b.expect(7))["seq"] == 1
    await b.send({"msgType": 5, "chatId": chat})  # bob shows the chat: it arrives as chat (3)
    assert (await b.expect(5))["code"] == 0
    body = {"chatId": chat, "body": "order shipped", "msgIdClient": "sys-1"}
    status, sent = await server.call("POST", "/api/v1/system-messages", body)
    assert status == 200, sent
    assert sent["chatId"] == chat and sent["seq"] == 2 and sent["duplicate"] is False

    shown = await b.expect(3)
    listed = await a.expect(7)  # alice does not show it: a notice, with all the fields
    for got in (shown, listed):
        assert got["chatId"] == chat and got["seq"] == 2 and got["fromUserId"] == 0
        assert got["body"] == "order shipped" and got["bodyType"] == 7
        assert got["fromClientType"] == 5 and got["msgIdClient"] == "sys-1"

    status, again = await server.call("POST", "/api/v1/system-messages", body)  # a retry
    assert status == 200 and again == {**sent, "duplicate": True}
    assert await a.silent() and await b.silent()

    status, page = await server.call("GET", f"/api/v1/users/{alice}/history?chatId={chat}")
    assert status == 200 and [m["seq"] for m in page["messages"]] == [1, 2]
    assert page["messages"][1]["fromUserId"] == 0 and page["more"] is False
    await a.send({"msgType": 14, "chatId": chat})
    assert [m["fromUserId"] for m in (await a.expect(14))["messages"]] == [alice, 0]
    # Unread for alice (she has not read it), read at once by bob who showed the chat.
    _, unread = await server.call("GET", f"/api/v1/users/{alice}/unread")
    assert unread["unread"] == [{"chatId": chat, "peerUserId": bob, "count": 1}]
    _, unread = await server.call("GET", f"/api/v1/users/{bob}/unread")
    assert unread == {"unread": [], "totalUnread": 0}


async def test_a_system_message_in_a_group_reaches_members_online_and_later(
    server: ServerProcess,
) -> None:
    owner, o = await server.online("owner")
    away = await server.add_user("away")
    o_team = {"userId": owner, "teamName": "g", "memberIds": [away, await server.add_user("c")]}
    tid = (await server.call("POST", "/api/v1/teams/create", o_team))[1]["teamId"]
    await o.expect(16)
    status, sent = await server.call(
        "POST", "/api/v1/system-messages", {"teamId": tid, "body": "hi"}
    )
    assert status == 200 and sent["teamId"] == tid and sent["seq"] == 2
    got = await o.expect(7)
    assert got["teamId"] == tid and got["fromUserId"] == 0 and got["body"] == "hi"
    late = await server.connect("ws")  # the backlog of a member who was away has it
    await late.login(server.token(away))
    assert (await late.expect(16))["seq"] == 1
    assert (await late.expect(7))["seq"] == 2
    # Refusals: neither or both conversations, no such group, an id used in another group.
    for bad, code in (
        ({"body": "x"}, 400),
        ({"body": "x", "chatId": 1, "teamId": tid}, 400),
        ({"body": "x", "teamId": 999999999}, 404),
        ({"body": "x", "chatId": 999999999}, 404),
        ({"body": "x", "teamId": tid, "msgIdClient": "y" * 51}, 400),
    ):
        status, body = await server.call("POST", "/api/v1/system-messages", bad)
        assert status == code and body["code"] == code, (bad, body)
    other = (await server.call("POST", "/api/v1/teams/create", {**o_team, "teamName": "h"}))[1]
    await o.expect(16)
    first = {"teamId": tid, "body": "x", "msgIdClient": "once"}
    assert (await server.call("POST", "/api/v1/system-messages", first))[0] == 200
    status, body = await server.call(
        "POST", "/api/v1/system-messages", {**first, "teamId": other["teamId"]}
    )
    assert status == 409 and "another conversation" in body["reason"]
