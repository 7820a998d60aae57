"""Text is stored alike on every backend: 4-byte characters round-trip, identifiers compare
byte for byte (MariaDB's usual collations would make "abc", "ABC" and "abc " one msgIdClient),
U+0000 is refused before anything is stored (PostgreSQL cannot hold it), and a body as large
as the frame limit allows fits (MySQL's TEXT holds 64 KiB of bytes)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

from tests.helpers import ServerProcess, TcpClient

EMOJI = "😀🎉👩‍👩‍👧 𝄞"


async def test_four_byte_characters_round_trip(server: ServerProcess) -> None:
    status, user = await server.call("POST", "/api/v1/users", {"username": "ann 😀", "mobile": ""})
    assert status == 201, user
    ann = user["userId"]
    assert (await server.call("GET", f"/api/v1/users/{ann}"))[1]["username"] == "ann 😀"
    a = await server.connect()
    await a.login(server.token(ann))
    bob, b = await server.online("bob")
    mid = f"id-{EMOJI}"
    sent = await a.chat(bob, mid, f"hello {EMOJI}")
    got = await b.expect(7)
    assert (got["body"], got["msgIdClient"]) == (f"hello {EMOJI}", mid)
    again = await a.chat(bob, mid, f"hello {EMOJI}")  # a retry, found by its emoji id
    assert again["msgIdServer"] == sent["msgIdServer"]
    await a.send({"msgType": 14, "chatId": sent["chatId"], "limit": 5})
    (stored,) = (await a.expect(14))["messages"]
    assert stored["body"] == f"hello {EMOJI}" and stored["msgIdClient"] == mid
    rows = server.sql("select body, msg_id_client from person_msg where from_user_id = ?", ann)
    assert rows == [(f"hello {EMOJI}", mid)]
    carl = await server.add_user("carl")  # (a group of two is a one-to-one chat)
    await a.send({"msgType": 16, "teamName": f"team {EMOJI}", "memberIds": [bob, carl]})
    while "code" not in (answer := await a.expect(16)):
        pass  # the group's event, not the answer
    assert answer["code"] == 0, answer
    team = answer["teamId"]
    assert server.sql("select team_name from team where team_id = ?", team) == [(f"team {EMOJI}",)]


async def test_message_ids_differing_in_case_or_trailing_spaces_are_different(
    server: ServerProcess,
) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    ids = ["abc", "ABC", "abc ", "abc  ", "Abc", "ábc", "abç"]
    answers = [await a.chat(bob, mid, f"body of {mid!r}") for mid in ids]
    assert len({ans["msgIdServer"] for ans in answers}) == len(ids), answers
    assert [(await b.expect(7))["msgIdClient"] for _ in ids] == ids
    rows = server.sql(
        "select msg_id_client, body from person_msg where from_user_id = ? order by seq", alice
    )
    assert rows == [(mid, f"body of {mid!r}") for mid in ids]
    # Each is still its own retry.
    assert (await a.chat(bob, "abc ", "again"))["msgIdServer"] == answers[2]["msgIdServer"]
    assert await b.silent()


async def test_nul_in_text_is_refused_before_anything_is_stored(server: ServerProcess) -> None:
    alice, a = await server.online("alice")
    bob, b = await server.online("bob")
    for mid, body in (("nul-body", "a\u0000b"), ("nul-id\u0000", "fine")):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": mid, "body": body})
        err = await a.expect(8)
        assert err["code"] == 400 and "U+0000" in err["reason"], err
        assert err["msgIdClient"] == mid
    status, body = await server.call("POST", "/api/v1/users", {"username": "x\u0000y"})
    assert status == 400 and "U+0000" in body["reason"], body
    # A backslash before "u0000" is text, not a NUL.
    ok = await a.chat(bob, "literal", "a\\u0000b")
    assert (await b.expect(7))["body"] == "a\\u0000b" and ok["seq"] == 1
    assert server.count("select count(*) from person_msg where from_user_id = ?", alice) == 1


async def test_a_body_over_64_kib_of_utf8_is_stored_whole(
    make_server: Callable[..., ServerProcess],
) -> None:
    """With a larger frame limit, a body of 100 KB of 4-byte characters (MySQL's TEXT would
    refuse it under a strict sql_mode, or cut it without one)."""
    srv = make_server(max_frame=256 * 1024)
    alice, a = await srv.online("alice")
    bob, b = await srv.online("bob")
    assert isinstance(a, TcpClient)
    body = "😀" * 25_000
    frame = json.dumps(
        {"msgType": 3, "toUserId": bob, "msgIdClient": "big", "body": body}, ensure_ascii=False
    ).encode()
    assert 100_000 < len(frame) < 256 * 1024
    await a.send_raw(struct.pack(">I", len(frame)) + frame)
    assert (await a.expect(4))["code"] == 0
    assert (await b.expect(7))["body"] == body
    assert srv.sql("select body from person_msg where msg_id_client = 'big'") == [(body,)]
