"""Group chat over real sockets: membership, delivery per member, operations and errors."""

from __future__ import annotations

import asyncio

from tests.helpers import Client, ServerProcess


async def make_group(
    server: ServerProcess, owner: Client, owner_id: int, members: list[int], name: str = "team"
) -> dict[str, object]:
    await owner.send({"msgType": 16, "teamName": name, "memberIds": members})
    answer = await owner.expect(16)
    assert answer["code"] == 0, answer
    return answer


async def test_group_message_reaches_every_member_on_both_transports(
    server: ServerProcess,
) -> None:
    owner, o = await server.online("owner", "tcp")
    people = [await server.online(f"m{i}", "ws" if i % 2 else "tcp") for i in range(4)]
    ids = [u for u, _ in people]
    created = await make_group(server, o, owner, ids, "crew")
    team = created["teamId"]
    assert created["memberIds"] == sorted([owner, *ids]) and created["ownerId"] == owner
    for _, c in people:  # everyone hears that the group was created, with its name
        event = await c.expect(16)
        assert event["teamId"] == team and event["seq"] == 1
        assert event["teamName"] == "crew" and "created crew" in event["body"]

    viewer_id, viewer = people[0]
    await viewer.send({"msgType": 5, "teamId": team})  # this member shows the group
    assert (await viewer.expect(5))["code"] == 0
    phone = await server.connect("ws")  # the owner's second device
    login = await phone.login(server.token(owner))
    assert login["unread"] == []  # events do not count as unread
    assert (await phone.expect(16))["seq"] == 1  # but the new device learns of the group

    answer = await o.chat_team(team, "g1", "hello crew")
    assert answer["teamId"] == team and answer["seq"] == 2
    got = await viewer.expect(3)  # shows the group: as chat
    assert got["teamId"] == team and got["seq"] == 2 and got["fromUserId"] == owner
    assert "chatId" not in got and "toUserId" not in got
    for _, c in people[1:]:  # the others: as notice
        assert (await c.expect(7))["body"] == "hello crew"
    assert (await phone.expect(7))["seq"] == 2  # the sender's other device
    assert await o.silent()
    assert viewer_id in ids


async def test_group_send_costs_one_row(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    members = [await server.add_user(f"m{i}") for i in range(50)]
    team = (await make_group(server, o, owner, members))["teamId"]
    await o.chat_team(team, "one-row", "x")
    assert server.count("select count(*) from team_msg where team_id=? and msg_type=3", team) == 1
    assert server.count("select count(*) from team_member_msg") == 0


async def test_non_member_is_refused_and_nothing_is_stored(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    outsider, x = await server.online("outsider", "ws")
    members = [await server.add_user("m1"), await server.add_user("m2")]
    team = (await make_group(server, o, owner, members))["teamId"]
    before = server.count("select count(*) from team_msg where team_id=?", team)
    await x.send({"msgType": 3, "teamId": team, "msgIdClient": "sneak", "body": "hi"})
    err = await x.expect(8)
    assert err["code"] == 403 and err["msgIdClient"] == "sneak"
    for msg in (
        {"msgType": 5, "teamId": team},
        {"msgType": 14, "teamId": team},
        {"msgType": 22, "teamId": team},
        {"msgType": 17, "teamId": team, "memberIds": [outsider]},
    ):
        await x.send(msg)
        assert (await x.expect(8))["code"] == 403, msg
    await x.send({"msgType": 3, "teamId": 10**12, "msgIdClient": "nope", "body": "x"})
    assert (await x.expect(8))["code"] == 404
    assert server.count("select count(*) from team_msg where team_id=?", team) == before
    _, info = await server.post("/api/v1/teams/info", {"userId": owner, "teamId": team})
    assert outsider not in info["memberIds"]


async def test_owner_only_operations_and_membership_changes(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    m1, c1 = await server.online("m1", "ws")
    m2, c2 = await server.online("m2")
    newbie, cn = await server.online("newbie", "ws")
    team = (await make_group(server, o, owner, [m1, m2]))["teamId"]
    await c1.expect(16)
    await c2.expect(16)

    await c1.send({"msgType": 17, "teamId": team, "memberIds": [newbie]})
    assert (await c1.expect(8))["code"] == 403  # members cannot add
    await c1.send({"msgType": 18, "teamId": team, "memberIds": [m2]})
    assert (await c1.expect(8))["code"] == 403  # nor remove
    await c1.send({"msgType": 21, "teamId": team})
    assert (await c1.expect(8))["code"] == 403  # nor dissolve

    await o.send({"msgType": 17, "teamId": team, "memberIds": [newbie]})
    added = await o.expect(17)
    assert newbie in added["memberIds"]
    for c in (c1, c2, cn):
        event = await c.expect(17)
        assert event["memberIds"] == [newbie] and "added newbie" in event["body"]

    await c1.send({"msgType": 20, "teamId": team, "teamName": "renamed"})
    assert (await c1.expect(20))["teamName"] == "renamed"  # any member may rename
    for c in (o, c2, cn):
        assert (await c.expect(20))["teamName"] == "renamed"

    await o.send({"msgType": 18, "teamId": team, "memberIds": [m2]})
    assert m2 not in (await o.expect(18))["memberIds"]
    for c in (c1, c2, cn):  # the removed member hears it too
        assert (await c.expect(18))["memberIds"] == [m2]
    await c2.send({"msgType": 3, "teamId": team, "msgIdClient": "late", "body": "x"})
    assert (await c2.expect(8))["code"] == 403

    await cn.send({"msgType": 19, "teamId": team})
    assert (await cn.expect(19))["code"] == 0
    for c in (o, c1):
        assert "newbie left" in (await c.expect(19))["body"]
    await o.send({"msgType": 19, "teamId": team})
    assert (await o.expect(8))["code"] == 409  # the owner dissolves instead of leaving

    await o.send({"msgType": 21, "teamId": team})
    assert (await o.expect(21))["code"] == 0
    assert (await c1.expect(21))["teamId"] == team
    await c1.send({"msgType": 3, "teamId": team, "msgIdClient": "gone", "body": "x"})
    assert (await c1.expect(8))["code"] == 404


async def test_create_with_one_other_member_gives_a_one_to_one_chat(
    server: ServerProcess,
) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    answer = await make_group(server, a, alice, [bob])
    assert "teamId" not in answer and answer["chatId"] > 0 and answer["toUserId"] == bob
    sent = await a.chat(bob, "first", "hi")
    assert sent["chatId"] == answer["chatId"]


async def test_group_operations_over_http(server: ServerProcess) -> None:
    owner = await server.add_user("owner")
    m1, c1 = await server.online("m1", "ws")
    m2 = await server.add_user("m2")
    status, created = await server.post(
        "/api/v1/teams/create", {"userId": owner, "teamName": "backend", "memberIds": [m1, m2]}
    )
    assert status == 200 and created["memberIds"] == sorted([owner, m1, m2])
    team = created["teamId"]
    assert (await c1.expect(16))["teamId"] == team
    status, body = await server.post(
        "/api/v1/teams/remove", {"userId": m1, "teamId": team, "memberIds": [m2]}
    )
    assert status == 403 and "owner" in body["reason"]
    status, body = await server.post("/api/v1/teams/info", {"userId": 10**12, "teamId": team})
    assert status == 403
    status, body = await server.post("/api/v1/teams/info", {"userId": owner, "teamId": 10**12})
    assert status == 404
    status, body = await server.post("/api/v1/teams/info", {"userId": m1, "teamId": team})
    assert status == 200 and body["teamName"] == "backend" and body["ownerId"] == owner
    status, body = await server.post("/api/v1/teams/create", {"userId": owner}, api_key="wrong")
    assert status == 401


async def test_group_members_receive_in_one_order(server: ServerProcess) -> None:
    """Two members sending at once: every member sees the same sequence, in order."""
    owner, o = await server.online("owner")
    people = [await server.online(f"m{i}", "ws" if i % 2 else "tcp") for i in range(3)]
    team = (await make_group(server, o, owner, [u for u, _ in people]))["teamId"]
    for _, c in people:
        await c.expect(16)
    senders = [people[0][1], people[1][1]]

    async def burst(c: Client, tag: str) -> None:
        for i in range(50):
            await c.send({"msgType": 3, "teamId": team, "msgIdClient": f"{tag}{i}", "body": tag})

    await asyncio.gather(*(burst(c, f"s{k}") for k, c in enumerate(senders)))
    views = []
    for _, c in [*people, (owner, o)]:
        delivered, answered = [], []
        while len(delivered) + len(answered) < 100:
            msg = await c.recv()
            if msg["msgType"] in (3, 7):
                delivered.append((msg["seq"], msg["msgIdClient"]))
            elif msg["msgType"] == 4:
                answered.append((msg["seq"], msg["msgIdClient"]))
        assert [seq for seq, _ in delivered] == sorted(seq for seq, _ in delivered)
        views.append(dict(delivered + answered))
    assert all(len(v) == 100 for v in views)
    assert all(v == views[0] for v in views)  # one order: the same seq for the same message
