"""Tokens that expire while the client is connected: the server ends the session (401), the
client asks its token callable for a fresh token and carries on, losing and repeating
nothing; with a plain string it cannot renew, so it closes instead of retrying in vain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from imhub.client import ClientClosed, Sent, State, StateChanged
from imhub.client.events import Event
from tests.client.conftest import App
from tests.helpers import ServerProcess


async def test_an_expiring_token_is_renewed_and_nothing_is_lost(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """Alice's tokens last 1 to 2 s; when the server ends her session both users are sending,
    and both send again while she is away: every message is stored once and handed over
    once, in order, on both sides."""
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    minted = 0

    async def alice_token() -> str:  # async, as a call to a backend would be
        nonlocal minted
        await asyncio.sleep(0)
        minted += 1
        return server.token(alice, ttl=2)

    # Long heartbeats and backoff: only the expiry can make these clients reconnect here.
    options = {"heartbeat_interval": 60.0, "backoff_base": 5.0, "backoff_cap": 5.0}
    a = make_app(f"tcp://127.0.0.1:{server.port}", alice_token, **options)
    b = make_app(f"ws://127.0.0.1:{server.port}/ws", lambda: server.token(bob), **options)
    await a.client.start()
    await b.client.start()

    sends: list[asyncio.Task[Sent]] = []
    from_alice: list[str] = []
    from_bob: list[str] = []

    def burst(tag: str) -> None:
        for i in range(25):
            body_a, body_b = f"a-{tag}-{i}", f"b-{tag}-{i}"
            sends.append(asyncio.create_task(a.client.send_chat(to_user=bob, body=body_a)))
            sends.append(asyncio.create_task(b.client.send_chat(to_user=alice, body=body_b)))
            from_alice.append(body_a)
            from_bob.append(body_b)

    def on_event(event: Event) -> None:
        if isinstance(event, StateChanged) and event.state is State.RECONNECTING:
            burst(f"gap{minted}")  # while Alice has no session

    a.client.add_listener(on_event)
    burst("start")
    await a.until(lambda: State.RECONNECTING in a.states)
    burst("expired")
    await a.until(lambda: minted >= 2 and a.client.state is State.ONLINE)
    burst("renewed")

    results = await asyncio.wait_for(asyncio.gather(*sends), 30)
    assert all(isinstance(r, Sent) for r in results)
    await b.until(lambda: len(b.messages) >= len(from_alice))
    await a.until(lambda: len(a.messages) >= len(from_bob))
    assert [m.body for m in b.messages] == from_alice
    assert [m.body for m in a.messages] == from_bob
    assert sorted(r.seq for r in results) == list(range(1, len(results) + 1))
    assert a.states[:3] == [State.CONNECTING, State.ONLINE, State.RECONNECTING]
    assert a.client.state is State.ONLINE and State.RECONNECTING not in b.states


async def test_a_plain_token_that_expires_closes_the_client(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    user = await server.add_user("fixed")
    app = make_app(f"tcp://127.0.0.1:{server.port}", server.token(user, ttl=2))
    await app.client.start()
    await app.until(lambda: app.client.state is State.CLOSED)
    assert "token expired" in app.client.closed_reason
    assert app.states == [State.CONNECTING, State.ONLINE, State.CLOSED]  # no retry in vain
    with pytest.raises(ClientClosed):
        await app.client.send_chat(to_user=user, body="too late")


async def test_a_failing_token_callable_is_retried_like_a_failed_connect(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    user = await server.add_user("flaky")
    calls = 0

    def token() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("the token service is down")
        return server.token(user)

    app = make_app(f"tcp://127.0.0.1:{server.port}", token)
    await asyncio.wait_for(app.client.start(), 10)
    assert calls == 3 and app.client.state is State.ONLINE
