"""The client library against a real server, with no faults: the API and the events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

import imhub.client
from imhub.client import ClientClosed, ClientError, Message, Read, Recalled, State
from imhub.protocol import codec
from imhub.protocol.messages import MsgType
from tests.client.conftest import App
from tests.helpers import ServerProcess


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_chat_between_two_applications(
    server: ServerProcess, make_app: Callable[..., App], via: str
) -> None:
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    url = {"tcp": f"tcp://127.0.0.1:{server.port}", "ws": f"ws://127.0.0.1:{server.port}/ws"}[via]
    a = make_app(url, server.token(alice))
    b = make_app(url, server.token(bob))
    await a.client.start()
    await b.client.start()
    assert a.states == [State.CONNECTING, State.ONLINE]
    sent = await a.client.send_chat(to_user=bob, body="hi bob")
    assert sent.seq == 1 and sent.chat_id and sent.msg_id_server
    await b.until(lambda: len(b.messages) == 1)
    got = b.messages[0]
    assert (got.body, got.from_user_id, got.seq, got.chat_id) == ("hi bob", alice, 1, sent.chat_id)

    await b.client.enter(chat_id=sent.chat_id)
    await a.until(lambda: any(isinstance(e, Read) and e.reader == bob for e in a.events))
    reply = await b.client.send_chat(to_user=alice, body="hi alice")
    await a.until(lambda: len(a.messages) == 1)
    assert a.messages[0].seq == reply.seq == 2
    assert a.messages == [m for m in a.messages if isinstance(m, Message)]

    history, more = await a.client.history(chat_id=sent.chat_id)
    assert [m.body for m in history] == ["hi bob", "hi alice"] and not more
    assert await b.client.unread() == []
    recall_seq = await a.client.recall(sent.seq, chat_id=sent.chat_id)
    await b.until(lambda: any(isinstance(e, Recalled) for e in b.events))
    assert recall_seq == 3


async def test_refusals_raise_and_logout_closes(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    alice = await server.add_user("alice")
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    await a.client.start()
    with pytest.raises(ClientError) as err:
        await a.client.send_chat(to_user=10**12, body="nobody")
    assert err.value.code == 404
    with pytest.raises(ClientError) as err:
        await a.client.group(MsgType.TEAM_INFO, teamId=10**12)
    assert err.value.code == 404
    await a.client.logout()
    assert a.client.state is State.CLOSED
    with pytest.raises(ClientClosed):
        await a.client.send_chat(to_user=alice, body="after logout")


async def test_bad_token_closes_without_retrying(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    a = make_app(f"tcp://127.0.0.1:{server.port}", "not-a-token")
    with pytest.raises(ClientClosed) as err:
        await a.client.start()
    assert "401" in str(err.value)
    assert a.states == [State.CONNECTING, State.CLOSED]


async def test_groups_through_the_client(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    ids = [await server.add_user(f"u{i}") for i in range(3)]
    apps = [make_app(f"ws://127.0.0.1:{server.port}/ws", server.token(u)) for u in ids]
    for app in apps:
        await app.client.start()
    created = await apps[0].client.group(MsgType.TEAM_CREATE, teamName="crew", memberIds=ids[1:])
    team = created.team_id
    assert team
    sent = await apps[1].client.send_chat(team=team, body="hello")
    for app in (apps[0], apps[2]):
        await app.until(lambda app=app: [m.body for m in app.messages] == ["hello"])
        assert app.messages[0].seq == sent.seq == 2
    await apps[2].client.read(sent.seq, team_id=team)
    count, readers = await apps[1].client.receipts(sent.seq, team_id=team)
    assert (count, readers) == (1, [ids[2]])


async def test_the_shared_client_is_one_per_process() -> None:
    from imhub.client import client as module
    from imhub.client import shared

    module._shared.clear()
    with pytest.raises(RuntimeError):
        shared()
    first = shared("tcp://127.0.0.1:1", "t")
    assert shared() is first and shared("tcp://other:2", "u") is first
    module._shared.clear()


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_message_over_the_frame_limit_is_refused_at_once(
    server: ServerProcess, make_app: Callable[..., App], via: str
) -> None:
    """Outside testing of issue 9: a body the server refuses by closing the connection was
    resent at every reconnect, for ever, and every later send waited behind it."""
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    url = {"tcp": f"tcp://127.0.0.1:{server.port}", "ws": f"ws://127.0.0.1:{server.port}/ws"}[via]
    a = make_app(url, server.token(alice))
    await a.client.start()
    with pytest.raises(ClientError) as refused:
        await a.client.send_chat(to_user=bob, body="p" * 70_000)
    assert refused.value.code == 413
    sent = await a.client.send_chat(to_user=bob, body="small after it")
    assert sent.seq == 1
    # Exactly the server's limit is accepted, on both transports.
    fits = "q" * (
        65_536 - len('{"msgType":3,"msgIdClient":"m","bodyType":0,"body":"","toUserId":}')
    )
    fits = fits[: -len(str(bob))]
    wire = {"msgType": 3, "msgIdClient": "m", "bodyType": 0, "body": fits, "toUserId": bob}
    assert len(codec.encode_json(wire)) == 65_536
    assert (await a.client.send_chat(to_user=bob, body=fits, msg_id_client="m")).seq == 2
    assert a.states == [State.CONNECTING, State.ONLINE]  # never dropped


async def test_the_same_message_sent_twice_at_once_resolves_both(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """Issue 10, fault 4: the second call replaced the first in the outbox, which then never
    returned."""
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    await a.client.start()
    first, second = await asyncio.gather(
        a.client.send_chat(to_user=bob, body="once", msg_id_client="same"),
        a.client.send_chat(to_user=bob, body="once", msg_id_client="same"),
    )
    assert first == second and first.seq == 1


async def test_a_deliberate_close_is_not_reported_as_a_lost_connection(
    server: ServerProcess, make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.add_user("alice")
    a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice))
    await a.client.start()
    with caplog.at_level(logging.WARNING, logger="imhub.client"):
        await a.client.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert MsgType is imhub.client.MsgType  # the docs' group() example imports it from there


async def test_a_deleted_user_is_told_why(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """The client closes with the server's reason (it said "token expired" for any 401)."""
    user = await server.add_user("gone")
    app = make_app(f"tcp://127.0.0.1:{server.port}", server.token(user))
    await app.client.start()
    assert (await server.call("DELETE", f"/api/v1/users/{user}"))[0] == 204
    await app.until(lambda: app.client.state is State.CLOSED)
    assert app.client.closed_reason == "user deleted"
