"""Recall: the sender takes a message back within the window; everyone is told."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.test_groups import make_group
from tests.e2e.test_reads import unread
from tests.helpers import ServerProcess


async def test_recall_one_to_one(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    sent = await a.chat(bob, "m1", "oops")
    chat = sent["chatId"]
    await b.expect(7)
    assert await unread(b) == {("chat", chat): 1}

    await b.send({"msgType": 10, "chatId": chat, "seq": sent["seq"]})
    assert (await b.expect(8))["code"] == 403  # not bob's message

    await a.send({"msgType": 10, "chatId": chat, "seq": sent["seq"]})
    answer = await a.expect(10)
    assert answer["code"] == 0 and answer["refSeq"] == sent["seq"] and answer["seq"] == 2
    event = await b.expect(10)
    assert event["refSeq"] == sent["seq"] and event["fromUserId"] == alice
    assert await unread(b) == {}  # the recalled message no longer counts

    await a.send({"msgType": 10, "chatId": chat, "seq": sent["seq"]})
    assert (await a.expect(10))["seq"] == 2  # recalling again changes nothing
    assert await b.silent()

    await b.send({"msgType": 14, "chatId": chat})
    history = (await b.expect(14))["messages"]
    assert history[0]["recalled"] is True and history[0]["body"] == ""
    assert history[1]["msgType"] == 10 and history[1]["refSeq"] == sent["seq"]
    assert server.count(
        "select cancel_flag from person_msg where chat_id=? and seq=?", chat, sent["seq"]
    )


async def test_recall_in_a_group(server: ServerProcess) -> None:
    owner, o = await server.online("owner")
    people = [await server.online(f"m{i}", "ws") for i in range(2)]
    team = (await make_group(server, o, owner, [u for u, _ in people]))["teamId"]
    for _, c in people:
        await c.expect(16)
    sent = await o.chat_team(team, "g1", "oops")
    await o.send({"msgType": 10, "teamId": team, "seq": sent["seq"]})
    assert (await o.expect(10))["refSeq"] == sent["seq"]
    for _, c in people:
        assert (await c.expect(7))["seq"] == sent["seq"]
        assert (await c.expect(10))["refSeq"] == sent["seq"]
        assert await unread(c) == {}


async def test_recall_after_the_window_is_refused(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(recall_window=0)
    alice, a = await srv.online("alice")
    bob, b = await srv.online("bob")
    sent = await a.chat(bob, "m1", "too late")
    await b.expect(7)
    await a.send({"msgType": 10, "chatId": sent["chatId"], "seq": sent["seq"]})
    err = await a.expect(8)
    assert err["code"] == 403 and "recalled for 0 s" in err["reason"]
    assert await unread(b) == {("chat", sent["chatId"]): 1}
    assert srv.count("select count(*) from person_msg where cancel_flag = true") == 0


async def test_recall_of_unknown_message(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    sent = await a.chat(bob, "m1", "x")
    await a.send({"msgType": 10, "chatId": sent["chatId"], "seq": 99})
    assert (await a.expect(8))["code"] == 404
    await a.send({"msgType": 10, "chatId": sent["chatId"]})
    assert (await a.expect(8))["code"] == 400
