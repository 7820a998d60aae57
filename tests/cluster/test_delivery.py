"""Several nodes, one database, one Redis: delivery across nodes is once, in order, in the
form the receiving connection calls for."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.cluster.conftest import Node
from tests.helpers import TIMEOUT, Client


async def user_on(node: Node, name: str) -> tuple[int, Client]:
    return await node.online(name)


async def receive(client: Client, n: int, msg_type: int = 7) -> list[dict[str, Any]]:
    return [await client.expect(msg_type, TIMEOUT * 2) for _ in range(n)]


async def group_over(nodes: list[Node]) -> tuple[list[tuple[int, Client]], int]:
    """Two members online on each node, in one group made at the first: (members, team id),
    once every member has the creation event."""
    members = [await user_on(node, f"u{i}{j}") for i, node in enumerate(nodes) for j in range(2)]
    ids = [u for u, _ in members]
    status, team = await nodes[0].post(
        "/api/v1/teams/create", {"userId": ids[0], "teamName": "g", "memberIds": ids}
    )
    assert status in (200, 201), team
    for _, c in members:  # the creation event, everywhere
        event = await c.expect(16, TIMEOUT * 2)
        assert event["teamId"] == team["teamId"]
    return members, int(team["teamId"])


async def test_one_to_one_across_nodes(cluster: Any) -> None:
    one, two = cluster(2)
    a, ca = await user_on(one, "a")
    b, cb = await user_on(two, "b")
    answers = [await ca.chat(b, f"m{i}", f"hello {i}") for i in range(20)]
    got = await receive(cb, 20)
    assert [m["body"] for m in got] == [f"hello {i}" for i in range(20)]
    assert [m["seq"] for m in got] == [a_["seq"] for a_ in answers]
    assert all(m["fromUserId"] == a for m in got)
    assert await cb.silent()


async def test_group_over_three_nodes_one_sender_node(cluster: Any) -> None:
    members, team_id = await group_over(cluster(3))
    sender = members[0][1]
    sent = [(await sender.chat_team(team_id, f"g{i}", f"to all {i}"))["seq"] for i in range(15)]
    for user_id, c in members:
        if c is sender:
            continue
        got = await receive(c, 15)
        assert [m["seq"] for m in got] == sent, user_id
        assert await c.silent(0.2)


async def test_group_every_node_sends(cluster: Any) -> None:
    members, team_id = await group_over(cluster(3))

    async def send_and_receive(c: Client, who: int) -> tuple[list[int], list[int]]:
        """Send 10 at once, then read until all 10 are answered and the other members' 50
        messages have arrived: (seqs of our answers, seqs delivered to us, in arrival order)."""
        for i in range(10):
            await c.send({"msgType": 3, "teamId": team_id, "msgIdClient": f"{who}-{i}",
                          "body": f"{who} {i}"})  # fmt: skip
        mine: list[int] = []
        got: list[int] = []
        while len(mine) < 10 or len(got) < 50:
            msg = await c.recv(TIMEOUT * 2)
            if msg["msgType"] == 4:
                assert msg.get("code", 0) == 0, msg
                mine.append(msg["seq"])
            elif msg["msgType"] == 7:
                assert msg["teamId"] == team_id, msg
                got.append(msg["seq"])
        return mine, got

    results = await asyncio.gather(*(send_and_receive(c, u) for u, c in members))
    every = sorted(s for mine, _ in results for s in mine)
    assert every == list(range(every[0], every[0] + len(every)))  # no gap, no repeat
    for (user_id, c), (mine, got) in zip(members, results, strict=True):
        assert got == [s for s in every if s not in mine], user_id  # once each, in order
        assert await c.silent(0.2)


async def test_same_user_on_two_nodes(cluster: Any) -> None:
    one, two, three = cluster(3)
    a = await one.add_user("a")
    a1, a2 = await one.connect(), await two.connect()
    await a1.login(one.token(a))
    await a2.login(two.token(a))
    b, cb = await user_on(three, "b")
    c, cc = await user_on(one, "c")
    # b (node 3) to a: both of a's connections get it.
    sent = await cb.chat(a, "b1", "to a")
    for conn in (a1, a2):
        got = await conn.expect(7, TIMEOUT * 2)
        assert (got["seq"], got["body"]) == (sent["seq"], "to a")
    # a sends from node 1 to c: a's connection on node 2 gets its own message too.
    mine = await a1.chat(c, "a1", "from a")
    copy = await a2.expect(7, TIMEOUT * 2)
    assert (copy["seq"], copy["fromUserId"], copy["body"]) == (mine["seq"], a, "from a")
    assert (await cc.expect(7, TIMEOUT * 2))["body"] == "from a"
    assert await a1.silent(0.2)


async def test_chat_enter_seen_across_nodes(cluster: Any) -> None:
    one, two = cluster(2)
    a, ca = await user_on(one, "a")
    b, cb = await user_on(two, "b")
    first = await ca.chat(b, "m0", "first")
    chat_id = first["chatId"]
    await cb.expect(7, TIMEOUT * 2)
    await cb.send({"msgType": 5, "chatId": chat_id})
    assert (await cb.expect(5))["code"] == 0
    ca.skip_types = frozenset()  # a wants b's read receipts
    read = await ca.expect(12, TIMEOUT * 2)  # b read the first on entering
    assert read["seq"] == first["seq"]
    second = await ca.chat(b, "m1", "second")
    got = await cb.expect(3, TIMEOUT * 2)  # the chat form: b shows the conversation
    assert (got["seq"], got["body"]) == (second["seq"], "second")
    receipt = await ca.expect(12, TIMEOUT * 2)  # read at once, on the other node
    assert (receipt["fromUserId"], receipt["seq"]) == (b, second["seq"])
    await cb.send({"msgType": 9})
    assert (await cb.expect(9))["unread"] in (None, [])


async def test_unread_and_receipts_across_nodes(cluster: Any) -> None:
    one, two = cluster(2)
    a, ca = await user_on(one, "a")
    b, cb = await user_on(two, "b")
    answers = [await ca.chat(b, f"m{i}", f"n{i}") for i in range(3)]
    await receive(cb, 3)
    await cb.send({"msgType": 9})
    unread = (await cb.expect(9))["unread"]
    assert [(u["chatId"], u["count"]) for u in unread] == [(answers[0]["chatId"], 3)]
    ca.skip_types = frozenset()
    await cb.send({"msgType": 12, "chatId": answers[0]["chatId"], "seq": answers[1]["seq"]})
    assert (await cb.expect(12))["code"] == 0
    receipt = await ca.expect(12, TIMEOUT * 2)
    assert (receipt["fromUserId"], receipt["seq"]) == (b, answers[1]["seq"])
    await ca.send({"msgType": 13, "chatId": answers[0]["chatId"], "seq": answers[1]["seq"]})
    assert (await ca.expect(13))["readNum"] == 1
    await cb.send({"msgType": 9})
    assert [u["count"] for u in (await cb.expect(9))["unread"]] == [1]


async def test_deleted_user_closed_on_every_node(cluster: Any) -> None:
    nodes = cluster(3)
    d = await nodes[0].add_user("d")
    conns = []
    for node in nodes:
        conn = await node.connect()
        await conn.login(node.token(d))
        conns.append(conn)
    status, _ = await nodes[1].call("DELETE", f"/api/v1/users/{d}")
    assert status == 204
    for conn in conns:
        error = await conn.expect(8, TIMEOUT * 2)
        assert (error["code"], error["reason"]) == (401, "user deleted")
        assert await conn.closed()


async def test_notices_handed_over_once_across_nodes(cluster: Any) -> None:
    one, two, three = cluster(3)
    f = await one.add_user("f")
    g, cg = await three.online("g")
    f2, f3 = await two.connect(), await three.connect()
    await f2.login(two.token(f))
    await f3.login(three.token(f))
    status, answer = await one.post("/api/v1/notices", {"toUserIds": [f, g], "body": "hi"})
    assert status in (200, 201), answer
    for conn in (f2, f3, cg):  # each connection of each target, once
        got = await conn.expect(7, TIMEOUT * 2)
        assert (got["noticeId"], got["body"]) == (answer["noticeId"], "hi")
        assert await conn.silent(0.3)
    # Claimed by a node that had them online: a later login gets nothing more.
    late = await one.connect()
    await late.login(one.token(f))
    assert await late.silent(0.5)
    status, everyone = await two.post("/api/v1/notices/online", {"body": "all"})
    assert status in (200, 201), everyone
    for conn in (f2, f3, cg, late):
        assert (await conn.expect(7, TIMEOUT * 2))["body"] == "all"


def _redis_input_bytes(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_net_input_bytes"])
    finally:
        client.close()


async def test_a_message_too_large_for_the_bus_arrives_through_storage(
    cluster: Any, redis_server: Any
) -> None:
    """Found by an outside re-tester: a few messages of --max-frame's 8 MiB, published whole,
    passed Redis's 32 MB limit for a subscriber: every node's bus was cut, and the catch-up
    then dropped the readers as slow consumers. A large message's news is its place only; the
    receiving node reads it from storage, in order with the messages around it, once."""
    one, two = cluster(2, max_frame=2 * 1024 * 1024)
    a, ca = await user_on(one, "a")
    b, cb = await user_on(two, "b")
    members, team = await group_over([one, two])
    big = "B" * (1024 * 1024)
    before = _redis_input_bytes(redis_server.url)
    sent = []
    for i in range(4):  # large and small alternate: order is kept through storage
        sent.append(await ca.chat(b, f"p{i}", big if i % 2 == 0 else f"small {i}"))
    got = await receive(cb, 4)
    assert [m["seq"] for m in got] == [s["seq"] for s in sent]
    assert [len(m["body"]) for m in got] == [len(big), 7, len(big), 7]
    sender = members[0][1]
    posted = [(await sender.chat_team(team, f"g{i}", big))["seq"] for i in range(3)]
    for _, c in members[2:]:  # the members on the other node
        assert [m["seq"] for m in await receive(c, 3)] == posted
    assert await cb.silent(0.2)
    assert _redis_input_bytes(redis_server.url) - before < len(big)  # 5 MB sent, not via Redis
    assert a


async def test_a_fill_of_large_messages_waits_for_its_reader(cluster: Any) -> None:
    """The re-tester's second half: the fill from storage (after an outage, or of messages too
    large for the bus) wrote everything at once and cut its readers as slow consumers. It now
    writes as fast as the reader takes it, as a login backlog does: 12 MB to a reader that
    reads nothing until all is stored (its connection may hold about 4 MB) all arrive."""
    one, two = cluster(2, max_frame=2 * 1024 * 1024)
    _a, ca = await user_on(one, "a")
    b, cb = await user_on(two, "b")
    big = [chr(ord("a") + i) * (2 * 1024 * 1024 - 100) for i in range(6)]
    sent = [await ca.chat(b, f"big{i}", body) for i, body in enumerate(big)]
    got = await receive(cb, 6)
    assert [m["seq"] for m in got] == [s["seq"] for s in sent]
    assert [m["body"] for m in got] == big
    await cb.send({"msgType": 15})  # still served
    assert (await cb.answer(15))["code"] == 0
