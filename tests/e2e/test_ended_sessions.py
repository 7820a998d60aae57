"""A session the server ends (its user deleted, its token expired) or the client ends
(logout) while its sends are in flight: every send that was stored is answered before the
session's last word and the close. Found by an outside tester: with 3,000 sends pipelined
and the user deleted meanwhile, up to a whole batch (512) was stored and never answered."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest

from tests.helpers import ServerProcess, TcpClient

SENDS = 1500


async def pipeline(client: TcpClient, to: int, n: int) -> None:
    """Write ``n`` chats in one go, without waiting for any answer."""
    frames = []
    for i in range(n):
        body = json.dumps({"msgType": 3, "toUserId": to, "msgIdClient": f"m{i}", "body": "x"})
        frames.append(struct.pack(">I", len(body)) + body.encode())
    await client.send_raw(b"".join(frames))


async def until_closed(client: TcpClient) -> list[dict[str, Any]]:
    """Everything the server writes until it closes the connection."""
    got: list[dict[str, Any]] = []
    while True:
        try:
            got.append(await client.recv())
        except (asyncio.IncompleteReadError, ConnectionError):
            return got


def stored_from(server: ServerProcess, user: int) -> int:
    return server.count("select count(*) from person_msg where from_user_id = ?", user)


@pytest.mark.parametrize("repeat", range(2))
async def test_a_user_deleted_mid_stream_gets_an_answer_for_every_stored_send(
    server: ServerProcess, repeat: int
) -> None:
    sender, client = await server.online("sender")
    peer = await server.add_user("peer")
    await pipeline(client, peer, SENDS)
    status, _ = await server.call("DELETE", f"/api/v1/users/{sender}")
    assert status == 204
    got = await until_closed(client)
    answered = {m["msgIdClient"] for m in got if m["msgType"] == 4}
    assert len(answered) == stored_from(server, sender)  # stored, so answered
    assert got[-1] == {"msgType": 8, "code": 401, "reason": "user deleted"}  # the last word
    assert all(m["msgType"] in (4, 8) for m in got)


async def test_logout_answers_every_send_before_it(server: ServerProcess) -> None:
    sender, client = await server.online("sender")
    peer = await server.add_user("peer")
    await pipeline(client, peer, SENDS)
    await client.send({"msgType": 2})
    got = await until_closed(client)
    assert [m["msgType"] for m in got] == [4] * SENDS + [2]
    assert stored_from(server, sender) == SENDS
