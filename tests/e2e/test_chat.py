"""One-to-one chat over real sockets: TCP and WebSocket users, chat vs notice, idempotency."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults import install_faults, set_faults
from tests.helpers import ServerProcess

BOTH_WAYS = [("tcp", "ws"), ("ws", "tcp"), ("tcp", "tcp"), ("ws", "ws")]


@pytest.mark.parametrize(("a_via", "b_via"), BOTH_WAYS)
async def test_message_reaches_the_other_transport(
    server: ServerProcess, a_via: str, b_via: str
) -> None:
    alice, a = await server.online("alice", a_via)
    bob, b = await server.online("bob", b_via)

    answer = await a.chat(bob, "m1", "hi bob")
    assert answer["code"] == 0
    assert answer["msgIdServer"] > 0 and answer["chatId"] > 0 and answer["sendTime"] > 0

    got = await b.expect(7)  # bob has not entered the chat: a notice carrying the message
    assert got["fromUserId"] == alice and got["toUserId"] == bob
    assert got["body"] == "hi bob" and got["bodyType"] == 0
    assert got["msgIdServer"] == answer["msgIdServer"] and got["chatId"] == answer["chatId"]
    assert got["fromClientType"] == 2 and got["msgIdClient"] == "m1"

    reply = await b.chat(alice, "r1", "hi alice")
    assert reply["chatId"] == answer["chatId"]  # one chat row for the pair
    assert (await a.expect(7))["body"] == "hi alice"
    await a.close()
    await b.close()


async def test_chat_when_entered_notice_otherwise(server: ServerProcess) -> None:
    _alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    chat_id = (await a.chat(bob, "m1", "first"))["chatId"]
    assert (await b.expect(7))["body"] == "first"

    await b.send({"msgType": 5, "chatId": chat_id})
    entered = await b.expect(5)
    assert entered["code"] == 0 and entered["chatId"] == chat_id
    await a.chat(bob, "m2", "second")
    assert (await b.expect(3))["body"] == "second"

    await b.send({"msgType": 6, "chatId": chat_id})
    assert (await b.expect(6))["code"] == 0
    await a.chat(bob, "m3", "third")
    assert (await b.expect(7))["body"] == "third"


async def test_same_msg_id_client_is_stored_once(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    first = await a.chat(bob, "dup", "once")
    again = await a.chat(bob, "dup", "once")
    assert again["msgIdServer"] == first["msgIdServer"]
    assert again["sendTime"] == first["sendTime"]
    assert (await b.expect(7))["msgIdServer"] == first["msgIdServer"]
    assert await b.silent()
    stored = server.count(
        "select count(*) from person_msg where from_user_id=? and msg_id_client='dup'", alice
    )
    assert stored == 1


async def test_repeats_inside_one_batch_are_stored_once(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    msg = {"msgType": 3, "toUserId": bob, "msgIdClient": "burst", "body": "x"}
    for _ in range(5):  # written back to back: they reach the writer together
        await a.send(msg)
    answers = [await a.expect(4) for _ in range(5)]
    assert len({ans["msgIdServer"] for ans in answers}) == 1
    assert (await b.expect(7))["msgIdClient"] == "burst"
    assert await b.silent()
    assert server.count("select count(*) from person_msg where from_user_id=?", alice) == 1


async def test_a_retry_among_new_messages_leaves_no_gap(server: ServerProcess) -> None:
    """A batch holding a message stored before is undone and stored again without it: the
    new messages still get the next sequence numbers, with no gap where the retry was."""
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    first = await a.chat(bob, "old", "stored first")
    for mid in ("new1", "old", "new2"):  # written back to back: they reach the writer together
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": mid, "body": mid})
    answers = {ans["msgIdClient"]: ans for ans in [await a.expect(4) for _ in range(3)]}
    assert answers["old"]["msgIdServer"] == first["msgIdServer"]
    assert answers["old"]["seq"] == first["seq"] == 1
    assert sorted(answers[m]["seq"] for m in ("new1", "new2")) == [2, 3]
    delivered = [await b.expect(7) for _ in range(3)]
    assert [d["seq"] for d in delivered] == [1, 2, 3]
    assert await b.silent()
    with server.db() as db:
        seqs = db.execute("select seq from person_msg where from_user_id=? order by seq", (alice,))
        assert [s for (s,) in seqs] == [1, 2, 3]


async def test_all_connections_of_a_user_receive(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, phone = await server.online("bob", "tcp")
    browser = await server.connect("ws")
    await browser.login(server.token(bob), client_type=4)
    a2 = await server.connect("ws")  # alice's second device sees what she sent
    await a2.login(server.token(alice))

    answer = await a.chat(bob, "m1", "to every device")
    for conn in (phone, browser, a2):
        got = await conn.expect(7)
        assert got["msgIdServer"] == answer["msgIdServer"]
    assert await a.silent()  # the sending connection has its chat_answer, not a copy


async def test_messages_keep_their_order(server: ServerProcess) -> None:
    _alice, a = await server.online("alice")
    bob, b = await server.online("bob", "ws")
    for i in range(200):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"o{i}", "body": str(i)})
    answers = [await a.expect(4) for _ in range(200)]
    assert [ans["msgIdClient"] for ans in answers] == [f"o{i}" for i in range(200)]
    ids = [ans["msgIdServer"] for ans in answers]
    assert ids == sorted(ids)
    bodies = [(await b.expect(7))["body"] for _ in range(200)]
    assert bodies == [str(i) for i in range(200)]


async def test_storage_failure_answers_an_error_and_stores_nothing(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server()
    install_faults(srv.database)  # a real database refusal for one body, nothing else
    set_faults(srv.database, poison="boom")
    _alice, a = await srv.online("alice")
    bob, b = await srv.online("bob")
    for mid, body in (("ok1", "fine"), ("bad", "boom"), ("ok2", "fine too")):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": mid, "body": body})
    replies = {}
    for _ in range(3):
        msg = await a.recv()
        replies[msg["msgIdClient"]] = msg
    assert replies["ok1"]["msgType"] == 4 and replies["ok2"]["msgType"] == 4
    assert replies["bad"]["msgType"] == 8 and replies["bad"]["code"] == 500
    assert srv.count("select count(*) from person_msg where body='boom'") == 0
    assert sorted([(await b.expect(7))["body"] for _ in range(2)]) == ["fine", "fine too"]


async def test_websocket_binary_messages_work_too(server: ServerProcess) -> None:
    import json

    _, a = await server.online("alice", "ws")
    bob, b = await server.online("bob")
    msg = {"msgType": 3, "toUserId": bob, "msgIdClient": "bin", "body": "binary"}
    await a.ws.send(json.dumps(msg).encode())  # type: ignore[attr-defined]
    assert (await a.expect(4))["code"] == 0
    assert (await b.expect(7))["body"] == "binary"


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_burst_beyond_the_in_flight_limit_is_all_stored_in_order(
    server: ServerProcess, via: str
) -> None:
    """3,000 sends at once: past 1,000 unanswered the server stops reading that connection
    until answers catch up (back-pressure), and nothing is lost or reordered."""
    _, a = await server.online("alice", via)
    bob, b = await server.online("bob")
    for i in range(3000):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"b{i}", "body": str(i)})
    answers = [await a.expect(4) for _ in range(3000)]
    assert [x["msgIdClient"] for x in answers] == [f"b{i}" for i in range(3000)]
    assert [(await b.expect(7))["body"] for _ in range(3000)] == [str(i) for i in range(3000)]
