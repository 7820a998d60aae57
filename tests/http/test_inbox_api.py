"""A user's conversations, unread counts and history, and who is online, over the HTTP API."""

from __future__ import annotations

from typing import Any

from tests.helpers import ServerProcess


async def pages(server: ServerProcess, path: str, key: str, limit: int) -> list[list[Any]]:
    out: list[list[Any]] = []
    after = ""
    while True:
        status, page = await server.call("GET", f"{path}?limit={limit}{after}")
        assert status == 200, page
        out.append(page[key])
        if "next" not in page:
            return out
        after = f"&after={page['next']}"


async def test_conversations_and_unread_in_pages(server: ServerProcess) -> None:
    me, c = await server.online("me")
    peers = [await server.add_user(f"p{i}") for i in range(3)]
    chats = [(await c.chat(p, f"m{p}", "hi"))["chatId"] for p in peers]
    teams = []
    for name in ("t1", "t2"):
        await c.send({"msgType": 16, "teamName": name, "memberIds": peers[:2]})
        teams.append((await c.expect(16))["teamId"])
    # A message from a peer makes one chat and one group unread for me.
    status, token = await server.call("POST", "/api/v1/tokens", {"userId": peers[0], "ttl": 60})
    p0 = await server.connect("ws")
    await p0.send({"msgType": 1, "token": token["token"], "backlog": False})
    assert (await p0.expect(1))["code"] == 0
    await p0.chat(me, "back", "hello")
    await p0.chat_team(teams[1], "g", "hey")

    got = await pages(server, f"/api/v1/users/{me}/conversations", "conversations", 2)
    assert [len(p) for p in got] == [2, 2, 1]
    flat = [conv for page in got for conv in page]
    assert [cv.get("chatId") for cv in flat[:3]] == sorted(chats)
    assert [cv.get("teamId") for cv in flat[3:]] == sorted(teams)
    assert {cv.get("chatId") or -cv["teamId"]: cv["unread"] for cv in flat} == {
        **{ch: 0 for ch in chats}, chats[0]: 1, -teams[0]: 0, -teams[1]: 1,
    }  # fmt: skip
    status, first = await server.call("GET", f"/api/v1/users/{me}/conversations?limit=2")
    assert first["totalUnread"] == 2 and first["next"] == f"chat:{sorted(chats)[1]}"

    unread = await pages(server, f"/api/v1/users/{me}/unread", "unread", 1)
    assert unread == [
        [{"chatId": chats[0], "peerUserId": peers[0], "count": 1}],
        [{"teamId": teams[1], "count": 1}],
    ]
    for bad in ("after=chat", "after=team:x", "after=chat:1:2", "limit=0", "limit=x"):
        status, body = await server.call("GET", f"/api/v1/users/{me}/conversations?{bad}")
        assert status == 400 and body["code"] == 400, bad
    status, body = await server.call("GET", "/api/v1/users/999999999/conversations")
    assert status == 404 and body["reason"] == "user 999999999 does not exist"


async def test_history_pages_back_and_checks_membership(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    stranger = await server.add_user("stranger")
    chat = 0
    for i in range(5):
        chat = (await a.chat(bob, f"h{i}", f"message {i}"))["chatId"]
    path = f"/api/v1/users/{bob}/history?chatId={chat}&limit=2"
    status, page = await server.call("GET", path)
    assert status == 200 and [m["seq"] for m in page["messages"]] == [4, 5] and page["more"]
    status, page = await server.call("GET", path + "&beforeSeq=4")
    assert [m["body"] for m in page["messages"]] == ["message 1", "message 2"]
    status, page = await server.call("GET", path + "&beforeSeq=2")
    assert [m["seq"] for m in page["messages"]] == [1] and page["more"] is False
    assert page["chatId"] == chat and "teamId" not in page

    status, body = await server.call("GET", f"/api/v1/users/{stranger}/history?chatId={chat}")
    assert status == 404 and body["reason"] == f"no chat {chat} of yours"
    await a.send({"msgType": 16, "teamName": "g", "memberIds": [bob, stranger]})
    team = (await a.expect(16))["teamId"]
    await a.send({"msgType": 18, "teamId": team, "memberIds": [stranger]})
    await a.expect(18)
    outsider = await server.add_user("outsider")
    status, body = await server.call("GET", f"/api/v1/users/{outsider}/history?teamId={team}")
    assert status == 403
    status, page = await server.call("GET", f"/api/v1/users/{stranger}/history?teamId={team}")
    assert status == 200 and [m["msgType"] for m in page["messages"]] == [16, 18]  # a former member
    status, body = await server.call("GET", f"/api/v1/users/{bob}/history")
    assert status == 400 and body["reason"] == "give either chatId or teamId"


async def online_of(server: ServerProcess, user: int) -> dict[str, Any]:
    status, body = await server.call("GET", f"/api/v1/users/{user}/online")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_online_status_lists_client_types(server: ServerProcess) -> None:
    user, tcp = await server.online("multi", "tcp")  # logs in as PC (2)
    ws = await server.connect("ws")
    await ws.login(server.token(user), client_type=4)  # WEB
    phone = await server.connect("tcp")
    await phone.login(server.token(user), client_type=4)
    assert await online_of(server, user) == {
        "userId": user,
        "connections": 3,
        "clientTypes": [2, 4],
    }
    offline = await server.add_user("offline")
    assert await online_of(server, offline) == {
        "userId": offline,
        "connections": 0,
        "clientTypes": [],
    }

    listed: list[dict[str, Any]] = []
    after = 0
    while True:  # the list, in pages of 2, holds the user once, as the single read does
        status, page = await server.call("GET", f"/api/v1/online?limit=2&after={after}")
        assert status == 200 and len(page["users"]) <= 2
        listed += page["users"]
        if "next" not in page:
            break
        after = page["next"]
    ids = [u["userId"] for u in listed]
    assert ids == sorted(set(ids)) and offline not in ids
    assert [u for u in listed if u["userId"] == user] == [await online_of(server, user)]

    # The PC logs out: once its connection is closed, only the WEB ones are left.
    await tcp.send({"msgType": 2})
    assert (await tcp.expect(2))["code"] == 0
    assert await tcp.closed()
    assert await online_of(server, user) == {"userId": user, "connections": 2, "clientTypes": [4]}
    await ws.close()
    await phone.close()


async def test_numbers_in_a_query_or_path_are_written_as_digits(server: ServerProcess) -> None:
    """Found by an outside tester: ``after=1e3`` read as 1000 and ``limit=2.0`` as 2, while a
    body refuses them; a conversation cursor past 2^53 − 1 was taken."""
    user = await server.add_user("digits")
    for path in (
        "/api/v1/users?after=1e3",
        "/api/v1/users?limit=2.0",
        f"/api/v1/users/{user}/conversations?after=chat:9007199254740992",
        f"/api/v1/users/{user}/history?chatId=1e0",
    ):
        status, body = await server.call("GET", path)
        assert status == 400 and body["code"] == 400, (path, body)
    assert (await server.call("GET", "/api/v1/users?after=0&limit=2"))[0] == 200


async def test_a_path_written_out_for_another_method_is_a_405(server: ServerProcess) -> None:
    """Found by an outside tester: GET /api/v1/teams/create was read as GET /teams/{teamId}."""
    status, body = await server.call("GET", "/api/v1/teams/create")
    assert status == 405 and body["code"] == 405
