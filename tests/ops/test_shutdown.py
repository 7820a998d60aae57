"""SIGTERM: the server stops reading, answers everything it read, tells every client to
reconnect elsewhere (503), and exits within its grace period; nothing answered is lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from tests.helpers import TIMEOUT, Client, ServerProcess, TcpClient
from tests.ops.watch import LoggedServer

WINDOW = 50  # sends in flight per sender
CLOSED = (asyncio.IncompleteReadError, ConnectionError, websockets.ConnectionClosed)


@pytest.fixture
def server_class() -> type[ServerProcess]:
    return LoggedServer


class Peer:
    """A raw client that reads everything until the server closes it; a sender also keeps
    ``WINDOW`` messages in flight to its receiver."""

    def __init__(self, client: Client, user_id: int, name: str, to: int = 0) -> None:
        self.client, self.user_id, self.name, self.to = client, user_id, name, to
        self.sent: list[str] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.frames: list[dict[str, Any]] = []
        self.room = asyncio.Semaphore(WINDOW)

    async def send_forever(self) -> None:
        with contextlib.suppress(*CLOSED):
            while True:
                await self.room.acquire()
                mid = f"{self.name}-{len(self.sent)}"
                self.sent.append(mid)
                await self.client.send(
                    {"msgType": 3, "toUserId": self.to, "msgIdClient": mid, "body": mid}
                )

    async def read_all(self, answered: Callable[[], None]) -> None:
        with contextlib.suppress(*CLOSED):
            while True:
                msg = await self.client.recv(4 * TIMEOUT)
                self.frames.append(msg)
                if msg["msgType"] == 4:
                    self.answers[msg["msgIdClient"]] = msg
                    self.room.release()
                    answered()


async def history(client: Client, chat_id: int) -> list[dict[str, Any]]:
    """Every message of a chat, oldest first, paging back from the newest."""
    out: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    while True:
        await client.send({"msgType": 14, "chatId": chat_id, "limit": 500, **before})
        page = await client.expect(14)
        out[:0] = page["messages"]
        if not page["more"]:
            return out
        before = {"beforeSeq": page["messages"][0]["seq"]}


async def test_sigterm_under_load_answers_what_was_read_and_loses_nothing(
    make_server: Callable[..., LoggedServer],
) -> None:
    srv = make_server(shutdown_grace=10, log_level="INFO")
    transports = [("tcp", "tcp"), ("ws", "tcp"), ("tcp", "ws")]  # sender, receiver
    senders, receivers = [], []
    for k, (st, rt) in enumerate(transports):
        to, receiver = await srv.online(f"r{k}", rt)
        user, sender = await srv.online(f"s{k}", st)
        senders.append(Peer(sender, user, f"s{k}", to))
        receivers.append(Peer(receiver, to, f"r{k}"))
    peers = senders + receivers
    enough = asyncio.Event()
    total = [0]

    def answered() -> None:
        total[0] += 1
        if total[0] >= 300:
            enough.set()

    readers = [asyncio.create_task(p.read_all(answered)) for p in peers]
    pumps = [asyncio.create_task(s.send_forever()) for s in senders]
    await asyncio.wait_for(enough.wait(), 30)
    signalled = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)  # under load: every sender has messages in flight
    await asyncio.wait_for(asyncio.gather(*readers), 15)
    for pump in pumps:
        pump.cancel()
    assert await asyncio.to_thread(srv.wait_exit, 15) == 0
    assert time.monotonic() - signalled < 10  # within the grace period

    for p in peers:  # each was told, after its last answer, and nothing came after
        assert p.frames[-1] == {
            "msgType": 8,
            "code": 503,
            "reason": "server is shutting down",
        }, (p.name, p.frames[-3:])
        assert [f for f in p.frames if f["msgType"] == 8] == [p.frames[-1]]
    for s, r in zip(senders, receivers, strict=True):
        assert len(s.answers) >= WINDOW and set(s.answers) <= set(s.sent)
        live = [f["msgIdClient"] for f in r.frames if f["msgType"] == 7]
        assert live == [m for m in s.sent if m in s.answers]  # delivered before the notice

    srv.restart()
    for s in senders:
        sender = await srv.connect("tcp")
        await sender.send({"msgType": 1, "token": srv.token(s.user_id), "backlog": False})
        assert (await sender.expect(1))["code"] == 0
        chat_id = next(iter(s.answers.values()))["chatId"]
        stored = await history(sender, chat_id)
        # Everything answered is stored, as answered; nothing was stored unanswered.
        assert {m["msgIdClient"]: (m["msgIdServer"], m["seq"]) for m in stored} == {
            mid: (a["msgIdServer"], a["seq"]) for mid, a in s.answers.items()
        }
        # The client resends what got no answer; each is stored once, in the order sent.
        for mid in s.sent:
            if mid not in s.answers:
                await sender.chat(s.to, mid, mid)
        stored = await history(sender, chat_id)
        assert [m["msgIdClient"] for m in stored] == s.sent
        await sender.close()
    for p in peers:
        await p.client.close()


async def stuck_login(srv: LoggedServer) -> tuple[Client, TcpClient]:
    """A reading client, and a login whose backlog (7.5 MB: more than the socket buffers
    hold) its client never reads: work that cannot finish."""
    _alice, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    body = "x" * 50_000
    for i in range(150):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": body})
    for _ in range(150):
        await a.expect(4)
    slow = await srv.slow_reader(bob)  # then it reads no more of its backlog
    return a, slow


async def test_work_that_cannot_finish_is_cut_when_the_grace_period_ends(
    make_server: Callable[..., LoggedServer],
) -> None:
    srv = make_server(shutdown_grace=1, max_outbound=64 * 1024, log_format="json", log_level="INFO")
    a, slow = await stuck_login(srv)
    srv.proc.send_signal(signal.SIGTERM)
    notice = await a.expect(8)  # the reading client is told when the grace period ends
    assert (notice["code"], notice["reason"]) == (503, "server is shutting down")
    line = await srv.wait_for(lambda r: r["msg"].startswith("the grace period ended"))
    assert line["level"] == "WARNING"
    assert await asyncio.to_thread(srv.wait_exit, 10) == 0  # it waited for the login, no more
    assert await slow.closed()  # cut


async def test_a_second_signal_ends_the_grace_period_at_once(
    make_server: Callable[..., LoggedServer],
) -> None:
    srv = make_server(
        shutdown_grace=60, max_outbound=64 * 1024, log_format="json", log_level="INFO"
    )
    _a, slow = await stuck_login(srv)
    srv.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await srv.wait_for(lambda r: r["msg"].startswith("shutting down"), 10)
    srv.proc.send_signal(signal.SIGINT)  # Ctrl-C again
    assert await asyncio.to_thread(srv.wait_exit, 30) == 0
    assert time.monotonic() - signalled < 10  # not the 60 s of the grace period
    assert await slow.closed()
