"""The SQLite writer runs its statements on the event loop's thread (``storage.bulk.Script``):
a write lock held by another process (``imhub user add`` beside the server, an operator's
``sqlite3`` shell) must stall only the writes, never the loop, and the write must go through
once the lock is released."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import ServerProcess


async def test_a_lock_held_by_another_process_stalls_the_writes_not_the_loop(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    if server.backend != "sqlite":
        pytest.skip("SQLite only")
    a, alice = await server.online("alice")
    b, bob = await server.online("bob")
    await alice.chat(b, "m0", "first")  # the chat's row exists: the next write is the script's
    await bob.next_of(lambda m: m["msgType"] in (3, 7))
    other = sqlite3.connect(server.database.url.split("///", 1)[1], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        await alice.send({"msgType": 3, "toUserId": b, "msgIdClient": "m1", "body": "hi"})
        # The loop goes on serving while the message waits for the lock: heartbeats are
        # answered at once, on this connection and on another, long before SQLite's busy
        # timeout (10 s) would have let a blocked loop go.
        for client in (alice, bob, alice):
            await client.send({"msgType": 0})
            beat = await client.next_of(lambda m: m["msgType"] in (0, 4), timeout=2)
            assert beat == {"msgType": 0, "code": 0}
        other.execute("COMMIT")
        answer = await alice.next_of(_answer_to("m1"))
        assert answer["code"] == 0 and answer["seq"] == 2
        got = await bob.next_of(lambda m: m["msgType"] in (3, 7))
        assert got["body"] == "hi" and got["seq"] == 2
    finally:
        other.close()
    assert server.count("SELECT count(*) FROM person_msg WHERE msg_id_client = 'm1'") == 1


def _answer_to(mid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["msgType"] == 4 and m.get("msgIdClient") == mid
