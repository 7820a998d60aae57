"""Unread counts, offline messages delivered at login, logout."""

from __future__ import annotations

from tests.helpers import ServerProcess


async def unread_of(client, chat_id: int) -> int:  # type: ignore[no-untyped-def]
    await client.send({"msgType": 9})
    answer = await client.expect(9)
    return {u["chatId"]: u["count"] for u in answer.get("unread", [])}.get(chat_id, 0)


async def test_unread_count_goes_up_and_is_reset_by_chat_enter(server: ServerProcess) -> None:
    _alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    chat_id = (await a.chat(bob, "m1", "one"))["chatId"]
    await a.chat(bob, "m2", "two")
    for _ in range(2):
        await b.expect(7)
    assert await unread_of(b, chat_id) == 2
    assert await unread_of(a, chat_id) == 0  # what alice sent is not unread for her

    await b.send({"msgType": 5, "chatId": chat_id})
    await b.expect(5)
    assert await unread_of(b, chat_id) == 0
    await a.chat(bob, "m3", "three")  # bob is in the chat: read at once
    await b.expect(3)
    assert await unread_of(b, chat_id) == 0
    read_positions = server.count(  # bob's read position is the chat's newest message
        "select count(*) from chat where chat_id=? and last_seq=3"
        " and (case when from_user_id=? then from_read_seq else to_read_seq end)=3",
        chat_id,
        bob,
    )
    assert read_positions == 1


async def test_offline_messages_arrive_at_login_in_order(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    sent = [await a.chat(bob, f"m{i}", f"body {i}") for i in range(30)]

    b = await server.connect("ws")
    login = await b.login(server.token(bob))
    assert login["userId"] == bob
    assert login["unread"] == [{"chatId": sent[0]["chatId"], "count": 30, "peerUserId": alice}]
    got = [await b.expect(7) for _ in range(30)]
    assert [g["msgIdServer"] for g in got] == [s["msgIdServer"] for s in sent]
    assert [g["body"] for g in got] == [f"body {i}" for i in range(30)]
    assert await b.silent()


async def test_backlog_and_live_messages_are_not_mixed_up(server: ServerProcess) -> None:
    """Messages sent while bob logs in arrive once each, in order, after the backlog."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    for i in range(600):  # more than one backlog page
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": str(i)})
    for _ in range(600):
        await a.expect(4)
    b = await server.connect("tcp")
    await b.send({"msgType": 1, "token": server.token(bob)})
    for i in range(600, 700):  # live, racing the login
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": str(i)})
    await b.expect(1)
    bodies = [(await b.expect(7))["body"] for _ in range(700)]
    assert bodies == [str(i) for i in range(700)]
    assert await b.silent()


async def test_read_messages_are_not_delivered_again_at_login(server: ServerProcess) -> None:
    _alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    chat_id = (await a.chat(bob, "m1", "seen"))["chatId"]
    await b.expect(7)
    await b.send({"msgType": 5, "chatId": chat_id})
    await b.expect(5)
    await b.close()
    b2 = await server.connect("tcp")
    login = await b2.login(server.token(bob))
    assert login["unread"] == []
    assert await b2.silent()


async def test_logout_answers_closes_and_removes_presence(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    await b.send({"msgType": 2})
    assert (await b.expect(2))["code"] == 0
    assert await b.closed()
    chat_id = (await a.chat(bob, "after", "while you were out"))["chatId"]
    b2 = await server.connect("tcp")
    login = await b2.login(server.token(bob))
    assert login["unread"] == [{"chatId": chat_id, "count": 1, "peerUserId": alice}]
    assert (await b2.expect(7))["body"] == "while you were out"


async def test_heartbeat_is_answered(server: ServerProcess) -> None:
    _, a = await server.online("alice", "ws")
    await a.send({"msgType": 0})
    assert await a.expect(0) == {"msgType": 0, "code": 0}
