"""The client under faults, through a proxy the test controls, while messages flow both ways:
each application must receive every message exactly once and in order, and every send must
either resolve with a stored message or raise."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from imhub.client import ClientClosed, ClientError, ConnectionLost, GroupChanged, Sent, State
from tests.client.conftest import App
from tests.helpers import TIMEOUT, ServerProcess
from tests.proxy import Proxy


async def pair(
    server: ServerProcess, make_app: Callable[..., App], proxy: Proxy, **options: object
) -> tuple[int, App, int, App]:
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    a = make_app(proxy.url, server.token(alice), **options)
    b = make_app(f"ws://127.0.0.1:{proxy.port}/ws", server.token(bob), **options)
    await a.client.start()
    await b.client.start()
    return alice, a, bob, b


async def exchange(
    a: App,
    alice: int,
    b: App,
    bob: int,
    rounds: int,
    fault: Callable[[int], Awaitable[None]],
    per_round: int = 25,
) -> None:
    """Both send ``per_round`` messages a round; ``fault(round)`` strikes while they are in
    flight. Then every message must be delivered once, in order, and every send resolved."""
    sends: list[asyncio.Task[Sent]] = []
    for r in range(rounds):
        for i in range(per_round):
            n = r * per_round + i
            sends.append(asyncio.create_task(a.client.send_chat(to_user=bob, body=f"a{n}")))
            sends.append(asyncio.create_task(b.client.send_chat(to_user=alice, body=f"b{n}")))
        await asyncio.sleep(0)  # let the sends reach the sockets before the fault strikes
        await fault(r)
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 60)
    failed = [r for r in results if not isinstance(r, Sent)]
    assert failed == [], failed  # nothing raised here: the client outlived every fault
    total = rounds * per_round
    await a.until(lambda: len(a.messages) >= total, 60)
    await b.until(lambda: len(b.messages) >= total, 60)
    assert [m.body for m in b.messages] == [f"a{n}" for n in range(total)]
    assert [m.body for m in a.messages] == [f"b{n}" for n in range(total)]
    seqs = sorted(r.seq for r in results if isinstance(r, Sent))
    assert seqs == list(range(1, 2 * total + 1))  # stored once each, no gaps


@pytest.mark.parametrize("max_inflight", [1000, 10])
async def test_connection_dropped_mid_stream(
    make_server: Callable[..., ServerProcess], make_app: Callable[..., App], max_inflight: int
) -> None:
    """Also with the server's back-pressure biting at every tenth unanswered send, which
    stretches each exchange across the drops."""
    server = make_server(max_inflight=max_inflight)
    proxy = await Proxy(server.port).start()
    alice, a, bob, b = await pair(server, make_app, proxy)

    async def drop(_round: int) -> None:
        proxy.drop_all()

    await exchange(a, alice, b, bob, rounds=4, fault=drop)
    assert a.states.count(State.RECONNECTING) >= 1 and a.client.state is State.ONLINE
    await proxy.close()


class AttemptCounter(logging.Handler):
    """Counts the client's logged connect attempts and wakes a waiter at each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.attempts = 0
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "connect attempt" in record.getMessage():
            self.attempts += 1
            self.seen.set()


async def test_first_connect_is_retried_until_the_server_answers(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    counter = AttemptCounter()
    logging.getLogger("imhub.client").addHandler(counter)
    proxy = await Proxy(server.port).start()
    await proxy.stop_listening()
    user = await server.add_user("patient")
    app = make_app(proxy.url, server.token(user))
    starting = asyncio.create_task(app.client.start())
    async with asyncio.timeout(10):
        while counter.attempts < 3:  # three refused attempts, each logged
            counter.seen.clear()
            await counter.seen.wait()
    logging.getLogger("imhub.client").removeHandler(counter)
    await proxy.listen_again()
    await asyncio.wait_for(starting, 10)
    assert app.client.state is State.ONLINE
    assert app.states == [State.CONNECTING, State.ONLINE]
    await proxy.close()


async def test_first_connect_gives_up_after_max_attempts(
    make_app: Callable[..., App],
) -> None:
    proxy = await Proxy(1).start()
    await proxy.stop_listening()
    app = make_app(proxy.url, "token", max_attempts=3)
    with pytest.raises(ClientClosed) as err:
        await app.client.start()
    assert "gave up after 3 attempts" in str(err.value)


async def test_black_holed_link_is_found_by_heartbeats(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    proxy = await Proxy(server.port).start()
    alice, a, bob, b = await pair(
        server,
        make_app,
        proxy,
        heartbeat_interval=0.2,
        heartbeat_timeout=0.5,
        request_timeout=1.0,
    )

    async def black_hole(round_: int) -> None:
        if round_ == 1:
            proxy.blackhole = True
            await a.until(lambda: State.RECONNECTING in a.states)  # found dead, not closed
            await b.until(lambda: State.RECONNECTING in b.states)
            proxy.drop_all()  # the old, silent sockets are gone for good
            proxy.blackhole = False

    await exchange(a, alice, b, bob, rounds=3, fault=black_hole)
    await proxy.close()


async def test_server_killed_and_restarted(
    make_server: Callable[..., ServerProcess], make_app: Callable[..., App]
) -> None:
    server = make_server()
    proxy = await Proxy(server.port).start()
    alice, a, bob, b = await pair(server, make_app, proxy)

    async def crash(round_: int) -> None:
        if round_ in (1, 2):
            await asyncio.to_thread(server.crash_and_restart)
            proxy.target_port = server.port
            proxy.drop_all()

    await exchange(a, alice, b, bob, rounds=4, fault=crash)
    await proxy.close()


async def test_logout_does_not_reconnect(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    proxy = await Proxy(server.port).start()
    user = await server.add_user("leaver")
    app = make_app(proxy.url, server.token(user))
    await app.client.start()
    proxy.new_connection.clear()
    await app.client.logout()
    assert app.client.state is State.CLOSED
    with pytest.raises(TimeoutError):  # ten times the first backoff delay, and nothing
        await asyncio.wait_for(proxy.new_connection.wait(), 0.5)
    await proxy.close()


async def test_a_restarted_application_loses_nothing(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """Cursors and the unanswered outbox survive in the state file."""
    proxy = await Proxy(server.port).start()
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    state = str(tmp_path / "alice.json")
    b = make_app(f"tcp://127.0.0.1:{server.port}", server.token(bob))
    await b.client.start()
    a = make_app(proxy.url, server.token(alice), state_file=state)
    await a.client.start()
    for i in range(5):
        await b.client.send_chat(to_user=alice, body=f"before {i}")
    await a.until(lambda: len(a.messages) == 5)

    await proxy.stop_listening()  # alice's link goes down and cannot come back
    proxy.drop_all()
    await a.until(lambda: a.client.state is State.RECONNECTING)
    pending = asyncio.create_task(a.client.send_chat(to_user=bob, body="while away"))
    await asyncio.sleep(0)
    await a.client.close()  # the application stops with that send unanswered
    with pytest.raises(ClientClosed):
        await pending
    for i in range(3):
        await b.client.send_chat(to_user=alice, body=f"after {i}")

    await proxy.listen_again()
    again = make_app(proxy.url, server.token(alice), state_file=state)
    await again.client.start()
    await again.until(lambda: len(again.messages) == 3)
    assert [m.body for m in again.messages] == [f"after {i}" for i in range(3)]
    await again.until(lambda: any(isinstance(e, Sent) for e in again.events))
    await b.until(lambda: [m.body for m in b.messages] == ["while away"])
    await proxy.close()


async def test_a_request_cut_by_a_drop_raises_a_public_error(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """Issue 10, fault 5: the private _LinkLost escaped from history(), unread() and the
    others when the link dropped during the call."""
    proxy = await Proxy(server.port).start()
    alice, a, _, _ = await pair(server, make_app, proxy)
    calls = [asyncio.create_task(a.client.unread()) for _ in range(20)]
    await asyncio.sleep(0)  # the requests are written: now the link drops under them
    proxy.drop_all()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert failed and all(isinstance(o, ConnectionLost) for o in failed), failed
    assert isinstance(failed[0], ClientError)  # what the docs promise callers
    await proxy.close()
    assert alice


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_stalled_link_is_found_dead_while_sends_are_blocked(
    server: ServerProcess, make_app: Callable[..., App], transport: str
) -> None:
    """Issue 10, fault 1: behind a peer that stopped reading, the heartbeat's own write never
    left the full send buffer, and its deadline only started after it: the link stayed ONLINE
    (TCP); over WebSocket, sends blocked on the dead link stayed pending long after their
    messages were resent. Detection is bounded by interval + timeout whatever the buffer
    holds, and the blocked sends are resent on the next link and all return."""
    proxy = await Proxy(server.port).start()
    interval, timeout = 0.5, 0.5
    alice, a, bob, b = await pair(
        server, make_app, proxy, heartbeat_interval=interval, heartbeat_timeout=timeout
    )
    sender, receiver, to = (a, b, bob) if transport == "tcp" else (b, a, alice)
    proxy.stall()
    sends = [
        asyncio.create_task(sender.client.send_chat(to_user=to, body=f"{i:03} " + "x" * 30_000))
        for i in range(200)
    ]
    await sender.until(lambda: State.RECONNECTING in sender.states, timeout=interval + timeout + 3)
    proxy.drop_all()
    proxy.flow()
    sent = await asyncio.wait_for(asyncio.gather(*sends), TIMEOUT * 4)
    assert sorted(s.seq for s in sent) == sorted({s.seq for s in sent})  # 200 stored once
    await receiver.until(lambda: len(receiver.messages) >= 200)
    assert [m.body[:3] for m in receiver.messages[-200:]] == [f"{i:03}" for i in range(200)]
    await proxy.close()


async def test_entering_a_conversation_not_seen_yet_drops_nothing(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """Issue 10, fault 3: the receiver enters a new chat (its id known from elsewhere) right
    after its first message is stored, while the peer keeps sending, over a link with 20 ms of
    latency each way. The sync that started the conversation began at the server's read
    position, which the entered connection had already moved past messages the client had not
    handed over; their live copies were then thrown away as duplicates."""
    proxy = await Proxy(server.port).start()
    proxy.delay = 0.02
    alice, bob = await server.add_user("alice"), await server.add_user("bob")
    b = make_app(proxy.url, server.token(bob))
    await b.client.start()
    a = await server.connect()  # a plain socket client sends for alice
    await a.login(server.token(alice))
    first = await a.chat(bob, "m0", "0")
    entering = asyncio.create_task(b.client.enter(chat_id=first["chatId"]))
    for i in range(1, 100):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": str(i)})
    await entering
    await b.until(lambda: len(b.messages) >= 100, timeout=TIMEOUT * 4)
    assert [m.body for m in b.messages] == [str(i) for i in range(100)]
    await proxy.close()


async def test_a_refused_conversation_does_not_close_the_client(
    server: ServerProcess, make_app: Callable[..., App]
) -> None:
    """Issue 10, fault 6: removed from a group while away, the client's reconnect named the
    group in its sync, the server refused it (404) and the client closed for good. Now the
    server syncs a former member up to the removal, refuses only conversations that were never
    the user's, and the client drops those and carries on."""
    proxy = await Proxy(server.port).start()
    owner, o = await server.online("owner")
    member = await server.add_user("member")
    app = make_app(proxy.url, server.token(member))
    await app.client.start()
    await o.send(
        {"msgType": 16, "teamName": "crew", "memberIds": [member, await server.add_user()]}
    )
    team = (await o.expect(16))["teamId"]
    await app.until(lambda: any(isinstance(e, GroupChanged) for e in app.events))
    app.client._core.inbox.order.cursors[10**12] = 0  # a conversation that was never the user's
    await proxy.stop_listening()
    proxy.drop_all()
    await o.send({"msgType": 18, "teamId": team, "memberIds": [member]})  # while away
    assert (await o.expect(18))["code"] == 0
    await proxy.listen_again()
    await app.until(lambda: any(isinstance(e, GroupChanged) and e.op == 18 for e in app.events))
    assert app.client.state is State.ONLINE
    assert 10**12 not in app.client._core.inbox.order.cursors
    await proxy.close()
    assert owner


@pytest.mark.parametrize("away", [False, True])
async def test_a_member_added_again_gets_nothing_said_while_out(
    server: ServerProcess, make_app: Callable[..., App], tmp_path: Path, away: bool
) -> None:
    """Found by an outside chaos run: a member removed and later added again was handed, by
    the sync that filled the gap, everything said while they were out (hundreds of messages).
    The membership begins at the add event; the client moves past the gap and goes on."""
    owner, o = await server.online("owner")
    member = await server.add_user("member")
    state = str(tmp_path / "member.imhub")
    app = make_app(f"tcp://127.0.0.1:{server.port}", server.token(member), state_file=state)
    await app.client.start()
    others = [member, await server.add_user()]  # with one member it would be a chat
    await o.send({"msgType": 16, "teamName": "crew", "memberIds": others})
    team = (await o.expect(16))["teamId"]
    await app.until(lambda: any(isinstance(e, GroupChanged) for e in app.events))
    if away:
        await app.client.close()
    await o.send({"msgType": 18, "teamId": team, "memberIds": [member]})
    assert (await o.expect(18))["code"] == 0
    for i in range(3):
        await o.chat_team(team, f"out{i}", f"out {i}")
    await o.send({"msgType": 17, "teamId": team, "memberIds": [member]})
    assert (await o.expect(17))["code"] == 0
    await o.chat_team(team, "back", "back")
    if away:
        app = make_app(f"tcp://127.0.0.1:{server.port}", server.token(member), state_file=state)
        await app.client.start()
    await app.until(lambda: [m.body for m in app.messages] == ["back"])
    await o.chat_team(team, "later", "later")
    await app.until(lambda: len(app.messages) == 2)
    assert [m.body for m in app.messages] == ["back", "later"]
    assert app.client.state is State.ONLINE
    assert owner
