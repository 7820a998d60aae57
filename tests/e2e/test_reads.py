"""Read state for one-to-one and group chats: unread counts, read up to, receipts."""

from __future__ import annotations

from typing import Any

from tests.e2e.test_groups import make_group
from tests.helpers import Client, ServerProcess


async def unread(c: Client) -> dict[tuple[str, int], int]:
    await c.send({"msgType": 9})
    answer = await c.expect(9)
    return {
        ("team", u["teamId"]) if "teamId" in u else ("chat", u["chatId"]): u["count"]
        for u in answer["unread"]
    }


async def convs(c: Client) -> list[dict[str, Any]]:
    await c.send({"msgType": 15})
    return list((await c.expect(15))["convs"])


async def test_one_to_one_read_up_to_and_receipts(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    sent = [await a.chat(bob, f"m{i}", str(i)) for i in range(5)]
    chat = sent[0]["chatId"]
    for _ in range(5):
        await b.expect(7)
    assert await unread(b) == {("chat", chat): 5}

    await b.send({"msgType": 12, "chatId": chat, "seq": sent[2]["seq"]})
    answer = await b.expect(12)
    assert answer["code"] == 0 and answer["seq"] == sent[2]["seq"]
    assert await unread(b) == {("chat", chat): 2}
    receipt = await a.expect(12)  # the sender learns how far bob has read
    assert receipt == {"msgType": 12, "chatId": chat, "fromUserId": bob, "seq": sent[2]["seq"]}

    await b.send({"msgType": 12, "chatId": chat, "seq": 1})  # never backwards
    assert (await b.expect(12))["seq"] == sent[2]["seq"]
    await b.send({"msgType": 12, "chatId": chat, "seq": 10**6})  # never past the end
    assert (await b.expect(12))["seq"] == sent[4]["seq"]
    assert await unread(b) == {}
    # The read that moved nothing told no one: the next receipt is the one that moved.
    assert (await a.recv())["seq"] == sent[4]["seq"]

    await a.send({"msgType": 13, "chatId": chat, "seq": sent[4]["seq"], "withReaders": True})
    receipts = await a.expect(13)
    assert receipts["readNum"] == 1 and receipts["readerIds"] == [bob]
    state = {c["chatId"]: c for c in await convs(a)}[chat]
    assert state["peerReadSeq"] == sent[4]["seq"] and state["lastSeq"] == sent[4]["seq"]


async def test_entering_reads_and_other_devices_hear_it(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, phone = await server.online("bob")
    pc = await server.connect("ws")
    await pc.login(server.token(bob))
    chat = (await a.chat(bob, "m1", "hi"))["chatId"]
    await phone.expect(7)
    await pc.expect(7)
    await pc.send({"msgType": 5, "chatId": chat})
    assert (await pc.expect(5))["seq"] == 1
    phone.skip_types = frozenset()
    assert await phone.expect(12) == {"msgType": 12, "chatId": chat, "fromUserId": bob, "seq": 1}
    assert await unread(phone) == {}
    # Bob shows the chat on the PC: new messages are read at once, and alice is told.
    await a.chat(bob, "m2", "again")
    assert (await pc.expect(3))["seq"] == 2
    a.skip_types = frozenset()
    assert (await a.expect(12))["seq"] == 2
    assert (await phone.expect(7))["seq"] == 2
    assert (await phone.expect(12))["seq"] == 2
    assert await unread(phone) == {}


async def test_group_unread_and_read_num(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    people = [await server.online(f"m{i}") for i in range(3)]
    team = (await make_group(server, o, owner, [u for u, _ in people]))["teamId"]
    for _, c in people:
        await c.expect(16)
    sent = [await o.chat_team(team, f"g{i}", str(i)) for i in range(4)]
    for _, c in people:
        for _ in range(4):
            await c.expect(7)
        assert await unread(c) == {("team", team): 4}  # group events are not counted
    assert await unread(o) == {}  # what you sent is not unread for you

    (u0, c0), (u1, c1), _ = people
    await c0.send({"msgType": 12, "teamId": team, "seq": sent[1]["seq"]})
    await c0.expect(12)
    await c1.send({"msgType": 5, "teamId": team})
    await c1.expect(5)
    assert await unread(c0) == {("team", team): 2}
    assert await unread(c1) == {}

    await o.send({"msgType": 13, "teamId": team, "seq": sent[1]["seq"]})
    assert (await o.expect(13))["readNum"] == 2
    await o.send({"msgType": 13, "teamId": team, "seq": sent[3]["seq"], "withReaders": True})
    receipts = await o.expect(13)
    assert receipts["readNum"] == 1 and receipts["readerIds"] == [u1]
    await o.send({"msgType": 13, "teamId": team, "seq": 10**6})
    assert (await o.expect(8))["code"] == 404


async def test_login_lists_group_and_chat_unread(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    m1, m2 = await server.add_user("m1"), await server.add_user("m2")
    team = (await make_group(server, o, owner, [m1, m2]))["teamId"]
    await o.chat_team(team, "g1", "to the group")
    chat = (await o.chat(m1, "p1", "to you"))["chatId"]
    c = await server.connect("tcp")
    login = await c.login(server.token(m1))
    assert sorted(login["unread"], key=str) == sorted(
        [{"teamId": team, "count": 1}, {"chatId": chat, "count": 1, "peerUserId": owner}], key=str
    )
    backlog = [await c.recv() for _ in range(3)]  # group creation event, group message, chat
    assert {(m["msgType"], m.get("teamId"), m.get("chatId")) for m in backlog} == {
        (16, team, None),
        (7, team, None),
        (7, None, chat),
    }
