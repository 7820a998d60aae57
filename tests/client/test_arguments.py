"""A malformed call raises ``ValueError`` at once and changes nothing; what the docs promise
of odd but valid calls holds. Found by an outside tester working from the docs alone: a
``msg_id_client`` that was not a string left ``send_chat`` waiting forever and its message
in the state file, refused again at every reconnect."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imhub.client import ImClient, MsgType, StateFileError
from tests.client.conftest import App
from tests.helpers import ServerProcess

BAD_SENDS: list[dict[str, Any]] = [
    {"msg_id_client": 5},
    {"msg_id_client": ""},
    {"msg_id_client": "x" * 51},
    {"body": "lone \ud800 surrogate"},
    {"body": 7},
    {"to_user": "2"},
    {"to_user": True},
    {"to_user": 2**53},
    {"body_type": -1},
    {"voice_time": ""},
    {"voice_time": False},
    {"voice_time": 3.5},
    {"to_user": None},
    {"team": 3},  # with to_user as well
]


async def test_a_malformed_send_raises_at_once_and_keeps_nothing(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path
) -> None:
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    state = tmp_path / "alice.imhub"
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice), state_file=str(state))
    await a.client.start()
    for bad in BAD_SENDS:
        call = {"to_user": bob, "body": "hi", **bad}
        with pytest.raises(ValueError):
            await a.client.send_chat(**call)
    with sqlite3.connect(state) as saved:
        assert saved.execute("select count(*) from outbox").fetchone() == (0,)
    sent = await a.client.send_chat(to_user=bob, body="still fine", msg_id_client="m1")
    assert sent.msg_id_client == "m1" and sent.seq == 1
    assert a.client.state.value == "online"


async def test_the_same_id_for_a_different_waiting_message_is_refused(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    carol = await server.add_user("carol")
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    await a.client.start()
    await a.client.close()  # offline: both calls wait in the outbox
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    first = asyncio.create_task(a.client.send_chat(to_user=bob, body="x", msg_id_client="same"))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="different message"):
        await a.client.send_chat(to_user=carol, body="x", msg_id_client="same")
    await a.client.start()
    assert (await first).msg_id_client == "same"


async def test_malformed_requests_raise_value_error(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    alice = await server.add_user("alice")
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    await a.client.start()
    calls = [
        a.client.history(chat_id="1"),  # type: ignore[arg-type]
        a.client.history(chat_id=1, team_id=2),
        a.client.history(),
        a.client.history(chat_id=1, limit=0),
        a.client.enter(team_id=-3),
        a.client.read(-1, chat_id=1),
        a.client.request("hello"),  # type: ignore[arg-type]
        a.client.request({"msgType": "x"}),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            await call
    # Any request is answered, a heartbeat too.
    answer = await a.client.request({"msgType": MsgType.HEARTBEAT})
    assert answer.msg_type == MsgType.HEARTBEAT


@pytest.mark.parametrize(
    "content",
    [b"random \x00\xff bytes", b"plain text", json.dumps([1, 2]).encode(), b'{"cursors": 5}'],
)
def test_a_file_that_is_not_a_state_file_is_refused_and_left_alone(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match="not an imhub state file"):
        ImClient("tcp://127.0.0.1:1", "token", state_file=str(path))
    assert path.read_bytes() == content


def test_an_sqlite_file_of_something_else_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("create table notes (text)")
    before = path.read_bytes()
    with pytest.raises(StateFileError, match="other tables: notes"):
        ImClient("tcp://127.0.0.1:1", "token", state_file=str(path))
    assert path.read_bytes() == before
