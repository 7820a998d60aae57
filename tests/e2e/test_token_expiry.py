"""A session lasts as long as its token: at expiry the server says so (401) and closes, on TCP
and WebSocket; a token must name a user id the protocol can carry, or it never gets further
than the login."""

from __future__ import annotations

import time

import jwt
import pytest

from imhub.service.auth import ALGORITHM
from tests.helpers import SECRET, ServerProcess


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_token_that_expires_ends_its_session(server: ServerProcess, via: str) -> None:
    alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    b = await server.connect(via)
    await b.login(server.token(bob, ttl=2))  # expires within 1 to 2 s
    await a.chat(bob, "m1", "while valid")
    assert (await b.expect(7))["body"] == "while valid"  # receiving works until then
    await b.send({"msgType": 3, "toUserId": alice, "msgIdClient": "b1", "body": "hi"})
    assert (await b.expect(4))["seq"] == 2  # and so does sending
    assert (await a.expect(7))["body"] == "hi"

    error = await b.expect(8)  # at expiry, without being asked
    assert error["code"] == 401 and "expired" in error["reason"]
    assert "msgIdClient" not in error  # it answers no request
    assert await b.closed()

    # Bob is offline now: a message waits for his next login, and arrives then.
    await a.chat(bob, "m2", "after expiry")
    again = await server.connect(via)
    login = await again.login(server.token(bob))
    assert login["unread"][0]["count"] == 2
    bodies = [(await again.expect(7))["body"] for _ in range(3)]
    assert bodies == ["while valid", "hi", "after expiry"]


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_expiry_during_a_held_sync_still_ends_the_session(
    server: ServerProcess, via: str
) -> None:
    """The expiry error is written ahead of anything held for the connection."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    for i in range(3):
        await a.chat(bob, f"m{i}", str(i))
    b = await server.connect(via)
    await b.send({"msgType": 1, "token": server.token(bob, ttl=2), "backlog": False})
    await b.expect(1)
    await b.send({"msgType": 11, "convs": [], "limit": 1, "msgIdClient": "s1"})
    assert (await b.expect(11))["more"] is True  # and never asks for the rest
    error = await b.expect(8)
    assert error["code"] == 401 and "msgIdClient" not in error
    assert await b.closed()


def signed(sub: str) -> str:
    """A correctly signed token whatever its ``sub``, as a backend holding the secret (or a
    bug in one) could make."""
    claims = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm=ALGORITHM)


@pytest.mark.parametrize("via", ["tcp", "ws"])
@pytest.mark.parametrize("sub", [str(2**64), str(2**63), str(2**53), "0", "\u0663"])
async def test_a_signed_token_naming_an_impossible_user_is_refused_at_login(
    server: ServerProcess, via: str, sub: str
) -> None:
    """Refused up front (never reaching storage), so logins and sends that share the writer's
    batch with it are served."""
    _alice, a = await server.online("alice")
    bob = await server.add_user("bob")
    bad = [await server.connect(via) for _ in range(3)]
    good = await server.connect(via)
    for c in bad:
        await c.send({"msgType": 1, "token": signed(sub)})
    await good.send({"msgType": 1, "token": server.token(bob)})
    await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": "m1", "body": "hi"})
    for c in bad:
        error = await c.expect(8)
        assert error["code"] == 401 and error["reason"].startswith("invalid token"), error
        assert await c.closed()
    assert (await good.expect(1))["code"] == 0
    assert (await a.expect(4))["code"] == 0
    assert server.count("SELECT count(*) FROM users") >= 2  # the server is fine


async def test_a_token_valid_for_years_keeps_its_session(server: ServerProcess) -> None:
    """A far expiry arms no timer the loop could misread as due."""
    user, _ = await server.online("early")
    c = await server.connect("tcp")
    await c.login(server.token(user, ttl=50 * 365 * 24 * 3600))
    await c.send({"msgType": 0})
    assert (await c.expect(0))["code"] == 0
    await c.close()
