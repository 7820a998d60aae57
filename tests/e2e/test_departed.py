"""Members who left and members who joined later: each sees the group from the event that made
them a member up to and including the one that ended it, and nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from imhub.service.gapfill import GapFiller
from imhub.service.sessions import Session
from tests.helpers import Client, ServerProcess
from tests.service.test_sessions import RecordingOutlet


async def group_of(owner: Client, members: list[int], name: str = "crew") -> int:
    await owner.send({"msgType": 16, "teamName": name, "memberIds": members})
    answer = await owner.expect(16)
    assert answer["code"] == 0, answer
    return int(answer["teamId"])


async def ask(client: Client, request: dict[str, Any], answer_type: int) -> dict[str, Any]:
    """Send a request and return its answer, passing over the events that arrive before it."""
    await client.send(request)
    while True:
        answer = await client.recv()
        if "code" in answer and answer["msgType"] in (answer_type, 8):
            break
    assert answer["msgType"] == answer_type and answer["code"] == 0, answer
    return answer


async def test_a_member_removed_while_offline_hears_of_it_at_login(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    carol = await server.add_user("carol")
    team = await group_of(a, [bob, carol])
    await b.close()  # Bob is offline from here on
    await a.chat_team(team, "before", "you will see this")
    removed = await ask(a, {"msgType": 18, "teamId": team, "memberIds": [bob]}, 18)
    await a.chat_team(team, "after", "not for bob")

    b = await server.connect()
    login = await b.login(server.token(bob))
    assert {"teamId": team, "count": 1} in login["unread"]  # "before"; events do not count
    backlog = [await b.expect(t) for t in (16, 7, 18)]  # created, "before", removed
    assert [m["seq"] for m in backlog] == [1, 2, removed["seq"]]
    assert backlog[2]["body"] == "alice removed bob" and backlog[1]["body"] == "you will see this"
    assert await b.silent()  # not "after"

    convs = (await ask(b, {"msgType": 15}, 15))["convs"]
    (group,) = [c for c in convs if c.get("teamId") == team]
    assert group["left"] is True and group["lastSeq"] == removed["seq"]
    assert group["unread"] == 1
    # A former member may still read what they were sent, and clear its count.
    history = await ask(b, {"msgType": 14, "teamId": team}, 14)
    assert [m["seq"] for m in history["messages"]] == [1, 2, removed["seq"]]
    read = await ask(b, {"msgType": 12, "teamId": team, "seq": 99}, 12)
    assert read["seq"] == removed["seq"]  # never past the end of the membership
    convs = (await ask(b, {"msgType": 15}, 15))["convs"]
    assert [c["unread"] for c in convs if c.get("teamId") == team] == [0]
    # But cannot write to it, nor see later messages.
    await b.send({"msgType": 3, "teamId": team, "msgIdClient": "x", "body": "hi"})
    assert (await b.expect(8))["code"] == 403
    await b.send({"msgType": 13, "teamId": team, "seq": removed["seq"] + 1})
    assert (await b.expect(8))["code"] == 403
    assert alice != carol


async def test_members_of_a_dissolved_group_get_everything_up_to_the_end(
    server: ServerProcess,
) -> None:
    _, a = await server.online("alice")
    bob, b = await server.online("bob")
    team = await group_of(a, [bob, await server.add_user("carol")])
    await b.close()
    await a.chat_team(team, "last", "goodbye")
    dissolved = await ask(a, {"msgType": 21, "teamId": team}, 21)
    b = await server.connect()
    await b.login(server.token(bob))
    assert [(await b.expect(t))["seq"] for t in (16, 7, 21)] == [1, 2, dissolved["seq"]]
    synced = await ask(b, {"msgType": 11, "convs": [{"teamId": team, "seq": 0}]}, 11)
    assert [m["seq"] for m in synced["messages"]] == [1, 2, dissolved["seq"]]
    assert [c["left"] for c in synced["convs"] if c.get("teamId") == team] == [True]
    # The group is gone, but what its former members were sent is theirs (history, reads,
    # receipts), so its unread count can be cleared.
    history = await ask(b, {"msgType": 14, "teamId": team}, 14)
    assert [m["seq"] for m in history["messages"]] == [1, 2, dissolved["seq"]]
    entered = await ask(b, {"msgType": 5, "teamId": team}, 5)
    assert entered["seq"] == dissolved["seq"]
    receipt = await ask(b, {"msgType": 13, "teamId": team, "seq": 2}, 13)
    assert receipt["readNum"] == 1  # bob
    unread = (await ask(b, {"msgType": 9}, 9))["unread"]
    assert [u for u in unread if u.get("teamId") == team] == []


async def test_receipts_count_only_members_who_were_there(server: ServerProcess) -> None:
    """Issue 9: Alice sends M, adds Dave, Dave reads everything: M's receipt does not count
    him; Bob, who read it and was then removed, still counts."""
    _, a = await server.online("alice")
    bob, b = await server.online("bob")
    team = await group_of(a, [bob, await server.add_user("carol")])
    m = await a.chat_team(team, "m", "before dave")
    assert [(await b.expect(t))["seq"] for t in (16, 7)] == [1, m["seq"]]
    await ask(b, {"msgType": 12, "teamId": team, "seq": m["seq"]}, 12)
    dave, d = await server.online("dave")
    await ask(a, {"msgType": 17, "teamId": team, "memberIds": [dave]}, 17)
    await ask(d, {"msgType": 5, "teamId": team}, 5)  # Dave shows the group: reads it all
    await ask(a, {"msgType": 18, "teamId": team, "memberIds": [bob]}, 18)
    receipt = await ask(
        a, {"msgType": 13, "teamId": team, "seq": m["seq"], "withReaders": True}, 13
    )
    assert receipt["readNum"] == 1 and receipt["readerIds"] == [bob]
    later = await a.chat_team(team, "later", "for dave too")
    receipt = await ask(
        a, {"msgType": 13, "teamId": team, "seq": later["seq"], "withReaders": True}, 13
    )
    assert receipt["readerIds"] == [dave]  # showing the group, Dave read it at once


async def test_a_change_that_changes_nothing_stores_nothing(server: ServerProcess) -> None:
    _, a = await server.online("alice")
    bob, b = await server.online("bob")
    team = await group_of(a, [bob, await server.add_user("carol")], "crew")
    stored = server.count("select count(*) from team_msg where team_id = ?", team)
    outsider = await server.add_user("dan")
    for op, extra in (
        (17, {"memberIds": [bob]}),  # already a member
        (18, {"memberIds": [outsider]}),  # not a member
        (20, {"teamName": "crew"}),  # the same name
    ):
        answer = await ask(a, {"msgType": op, "teamId": team, **extra}, op)
        assert "seq" not in answer and bob in answer["memberIds"], answer
    assert server.count("select count(*) from team_msg where team_id = ?", team) == stored
    assert await b.expect(16)  # the creation, and nothing after it
    assert await b.silent()


async def test_a_member_added_again_is_not_synced_what_was_said_while_out(
    server: ServerProcess,
) -> None:
    """Found by an outside chaos run: a member removed and later added again was sent, by a
    sync from before the removal, everything said while they were out. A membership begins at
    its add event: the sync starts there, and the conversation list says where (joinSeq)."""
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    team = await group_of(a, [bob, await server.add_user("carol")])  # one member: a chat
    removed = await ask(a, {"msgType": 18, "teamId": team, "memberIds": [bob]}, 18)
    for i in range(3):
        await a.chat_team(team, f"out{i}", "not for bob")
    added = await ask(a, {"msgType": 17, "teamId": team, "memberIds": [bob]}, 17)
    after = await a.chat_team(team, "back", "for bob again")

    page = await ask(b, {"msgType": 11, "convs": [{"teamId": team, "seq": removed["seq"]}]}, 11)
    assert [m["seq"] for m in page["messages"]] == [added["seq"], after["seq"]]
    (group,) = [c for c in page["convs"] if c.get("teamId") == team]
    assert group["joinSeq"] == added["seq"]
    assert alice


async def test_every_membership_is_kept_not_only_the_last(server: ServerProcess) -> None:
    """Each membership of a member, from the event that began it to the one that ended it,
    is stored (``team_membership``), for every way one begins or ends: create, add, remove,
    leave, dissolve. (A cluster node filling a gap from storage needs them all.)"""
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    carol = await server.add_user("carol")
    team = await group_of(a, [bob, carol])  # seq 1
    await ask(a, {"msgType": 18, "teamId": team, "memberIds": [bob]}, 18)  # 2
    await ask(a, {"msgType": 17, "teamId": team, "memberIds": [bob]}, 17)  # 3
    await ask(b, {"msgType": 19, "teamId": team}, 19)  # 4: bob leaves
    await ask(a, {"msgType": 17, "teamId": team, "memberIds": [bob]}, 17)  # 5
    await ask(a, {"msgType": 21, "teamId": team}, 21)  # 6: dissolved
    spans = server.sql(
        "select user_id, join_seq, leave_seq from team_membership where team_id = ?"
        " order by user_id, join_seq",
        team,
    )
    assert [tuple(int(v) for v in r) for r in spans] == [
        (alice, 1, 6),
        (bob, 1, 2),
        (bob, 3, 4),
        (bob, 5, 6),
        (carol, 1, 6),
    ]


async def churned(server: ServerProcess, ops: tuple[str, ...]) -> tuple[int, int]:
    """A group (seq 1) with a post (2), then ``ops`` on bob, from seq 3: (group, bob)."""
    _, a = await server.online("alice")
    bob = await server.add_user("bob")
    team = await group_of(a, [bob, await server.add_user("carol")])
    await a.chat_team(team, "p0", "P0")
    for op in ops:
        if op in ("remove", "add"):
            kind = 18 if op == "remove" else 17
            await ask(a, {"msgType": kind, "teamId": team, "memberIds": [bob]}, kind)
        else:
            await a.chat_team(team, op, op)
    return team, bob


async def filled(
    server: ServerProcess, team: int, user_id: int, floor: int, live: list[int]
) -> tuple[Session, list[dict[str, Any]]]:
    """A cluster node's fill from storage (``service.gapfill``) for a connection of
    ``user_id`` at ``floor`` given the live copies ``live`` (each ``{"seq": n, "live":
    true}``): the session, and what it wrote, once every fill is done."""
    engine = create_async_engine(server.database.url, poolclass=NullPool)
    try:
        filler = GapFiller(engine, lambda row, users: None, 64 * 1024)
        outlet = RecordingOutlet(1 << 20)
        session = Session(outlet, 0.0)
        session.user_id, session.on_gap, session.floor[-team] = user_id, filler.gap, floor
        for seq in live:
            session.deliver(-team, seq, b'{"seq": %d, "live": true}' % seq)
        while filler._running:
            await asyncio.gather(*filler._running.values())
    finally:
        await engine.dispose()
    return session, outlet.sent


async def test_a_gap_fill_gives_each_membership_and_nothing_between(
    server: ServerProcess,
) -> None:
    """A member removed, added, removed and added again while their node heard nothing gets
    every row of each membership, the events that ended one included, and nothing stored
    between; a copy of that (from a node that had not heard of the removal) never goes out,
    and the live copy that waited behind the gap follows. (The fill once read the last
    membership only: 8 and 9.)"""
    ops = ("remove", "add", "P1", "remove", "P2", "add", "P3")  # seqs 3 to 9
    team, bob = await churned(server, ops)
    session, sent = await filled(server, team, bob, 2, [7, 9])  # 7: P2, not bob's
    assert [(m["seq"], m.get("msgType")) for m in sent] == [
        (3, 18), (4, 17), (5, 7), (6, 18), (8, 17), (9, None)
    ]  # fmt: skip
    assert sent[2]["body"] == "P1" and sent[5] == {"seq": 9, "live": True}
    assert session.floor[-team] == 9 and not session.ahead


async def test_a_gap_fill_ends_with_the_last_membership(server: ServerProcess) -> None:
    """Removed, added, removed again while their node heard nothing: both memberships' rows,
    the last removal included, and not what followed it, not even a copy waiting. (The fill
    once started at the last join: the first removal, 3, was never given.)"""
    team, bob = await churned(server, ("remove", "add", "P1", "remove", "P2"))  # 3 to 7
    session, sent = await filled(server, team, bob, 2, [7])
    assert [(m["seq"], m.get("msgType")) for m in sent] == [(3, 18), (4, 17), (5, 7), (6, 18)]
    assert session.floor[-team] == 6 and not session.ahead


async def test_a_retry_refused_now_gets_the_answer_its_message_had(server: ServerProcess) -> None:
    """A client that lost the answer to a stored message retries it after the sender was
    removed from the group, or after the peer was deleted: it gets the original answer, not a
    403 or 404 that would show a delivered message as failed. A new message is refused."""
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    carol = await server.add_user("carol")
    team = await group_of(a, [bob, carol])
    await b.expect(16)  # the creation
    said = await b.chat_team(team, "g1", "stored before the removal")
    told = await b.chat(carol, "p1", "stored before the deletion")
    await ask(a, {"msgType": 18, "teamId": team, "memberIds": [bob]}, 18)
    assert (await server.call("DELETE", f"/api/v1/users/{carol}"))[0] == 204

    await b.send({"msgType": 3, "teamId": team, "msgIdClient": "g1", "body": "again"})
    again = await b.next_of(lambda m: m["msgType"] == 4)
    assert again["code"] == 0 and again["msgIdServer"] == said["msgIdServer"]
    assert again["seq"] == said["seq"] and again["sendTime"] == said["sendTime"]
    await b.send({"msgType": 3, "toUserId": carol, "msgIdClient": "p1", "body": "again"})
    again = await b.next_of(lambda m: m["msgType"] == 4)
    assert again["code"] == 0 and again["msgIdServer"] == told["msgIdServer"]

    await b.send({"msgType": 3, "teamId": team, "msgIdClient": "g2", "body": "new"})
    assert (await b.next_of(lambda m: m["msgType"] == 8))["code"] == 403
    await b.send({"msgType": 3, "toUserId": carol, "msgIdClient": "p2", "body": "new"})
    assert (await b.next_of(lambda m: m["msgType"] == 8))["code"] == 404
    assert server.count("select count(*) from team_msg where msg_id_client = 'g1'") == 1
    assert server.count("select count(*) from person_msg where from_user_id = ?", bob) == 1
    assert alice
