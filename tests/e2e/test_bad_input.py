"""Bad input gets a clear error, changes nothing, and leaves everyone else served."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from tests.helpers import ServerProcess, TcpClient


async def stored(server: ServerProcess) -> int:
    return server.count("select count(*) from person_msg")


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_each_bad_message_gets_an_error_and_the_connection_goes_on(
    server: ServerProcess, via: str
) -> None:
    alice, a = await server.online("alice", via)
    bob, b = await server.online("bob")
    before = await stored(server)
    cases: list[tuple[dict[str, object], int]] = [
        ({"msgType": 42}, 400),
        ({"msgType": 3, "toUserId": "two", "msgIdClient": "t1", "body": "x"}, 400),
        ({"msgType": 3, "toUserId": bob, "body": "no id"}, 400),
        ({"msgType": 3, "toUserId": bob, "msgIdClient": "t2"}, 400),
        ({"msgType": 3, "toUserId": 10**12, "msgIdClient": "t3", "body": "x"}, 404),
        ({"msgType": 3, "toUserId": bob, "fromUserId": bob, "msgIdClient": "t4", "body": "x"}, 403),
        ({"msgType": 3, "toUserId": alice, "msgIdClient": "t5", "body": "me"}, 400),
        ({"msgType": 5, "chatId": 10**12}, 404),
        ({"msgType": 5}, 400),
        ({"msgType": 1, "token": server.token(alice)}, 409),
    ]
    for msg, code in cases:
        await a.send(msg)
        err = await a.expect(8)
        assert err["code"] == code, (msg, err)
        assert err["reason"]
        if "msgIdClient" in msg:
            assert err["msgIdClient"] == msg["msgIdClient"]
    assert await stored(server) == before
    assert await b.silent(0.1)
    await a.chat(bob, "fine", "still works")  # the same connection is still served
    assert (await b.expect(7))["body"] == "still works"


async def test_invalid_json_gets_400_and_the_stream_goes_on(server: ServerProcess) -> None:
    _, a = await server.online("alice")
    assert isinstance(a, TcpClient)
    await a.send_raw(struct.pack(">I", 8) + b"not json")
    err = await a.expect(8)
    assert err["code"] == 400 and "JSON" in err["reason"]
    await a.send({"msgType": 0})
    await a.expect(0)


async def test_websocket_invalid_json(server: ServerProcess) -> None:
    _, a = await server.online("alice", "ws")
    await a.ws.send("{oops")  # type: ignore[attr-defined]
    assert (await a.expect(8))["code"] == 400
    await a.send({"msgType": 0})
    await a.expect(0)


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_messages_before_login_are_refused(server: ServerProcess, via: str) -> None:
    bob = await server.add_user("bob")
    c = await server.connect(via)
    await c.send({"msgType": 3, "toUserId": bob, "msgIdClient": "x", "body": "sneaky"})
    err = await c.expect(8)
    assert err["code"] == 401 and err["msgIdClient"] == "x"
    await c.send({"msgType": 0})  # heartbeats are fine before login
    await c.expect(0)
    assert server.count("select count(*) from person_msg where to_user_id=?", bob) == 0


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "",
        "expired",
        "wrong-secret",
        "unknown-user",
    ],
)
@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_bad_tokens_get_401_and_are_closed(
    server: ServerProcess, token: str, via: str
) -> None:
    from imhub.service.auth import TokenAuthority

    user = await server.add_user("u")
    value = {
        "expired": server.auth.mint(user, ttl=-10),
        "wrong-secret": TokenAuthority("another-secret-" + "y" * 32).mint(user),
        "unknown-user": server.token(10**12),
    }.get(token, token)
    c = await server.connect(via)
    await c.send({"msgType": 1, "token": value})
    err = await c.expect(8)
    assert err["code"] == 401
    assert await c.closed()


async def test_oversized_frame_is_refused_and_closed(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(max_frame=1024)
    _, bystander = await srv.online("other", "ws")
    _, a = await srv.online("alice")
    assert isinstance(a, TcpClient)
    await a.send_raw(struct.pack(">I", 1025) + b"x" * 100)
    err = await a.expect(8)
    assert err["code"] == 413
    assert await a.closed()
    await bystander.send({"msgType": 0})  # everyone else is still served
    await bystander.expect(0)


async def test_oversized_websocket_message_closes_with_1009(
    make_server: Callable[..., ServerProcess],
) -> None:
    import websockets

    srv = make_server(max_frame=1024)
    _, a = await srv.online("alice", "ws")
    await a.ws.send("x" * 2000)  # type: ignore[attr-defined]
    assert await a.closed()
    assert isinstance(a.ws.close_code, int)  # type: ignore[attr-defined]
    assert a.ws.close_code == websockets.frames.CloseCode.MESSAGE_TOO_BIG  # type: ignore[attr-defined]
