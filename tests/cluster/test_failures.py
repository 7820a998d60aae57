"""A cluster when parts of it fail: a node killed while messages flow, Redis restarted
mid-stream, presence of a crashed node, and ``--workers``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from imhub.client import ImClient, Message
from tests.cluster.conftest import Node
from tests.helpers import API_KEY, SECRET, TIMEOUT, TcpClient
from tests.proxy import Proxy


async def until(condition: Any, timeout: float = TIMEOUT * 4) -> None:
    """Poll another process's state (nothing there to wait on) until ``condition()``."""
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_redis_restarted_mid_stream(cluster: Any, redis_server: Any) -> None:
    one, two = cluster(2)
    a, ca = await one.online("a")
    b, cb = await two.online("b")  # across nodes
    c, cc = await one.online("c")  # beside a
    n = 60
    for i in range(n):
        if i == 20:
            redis_server.stop()
        if i == 40:
            redis_server.start()
        await ca.chat(b, f"b{i}", f"to b {i}")
        await ca.chat(c, f"c{i}", f"to c {i}")
        # Local delivery goes on, Redis or not (from 20 to 40 it is away).
        assert (await cc.expect(7))["body"] == f"to c {i}"
    got = [(await cb.expect(7, TIMEOUT * 3))["body"] for _ in range(n)]
    assert got == [f"to b {i}" for i in range(n)]  # all, once, in order
    assert await cb.silent(0.5)
    assert "cluster bus (Redis) unavailable" in one.log()


async def test_node_killed_while_messages_flow(cluster: Any, tmp_path: Path) -> None:
    one, two, three = cluster(3)
    sender_id = await one.add_user("s")
    receiver_id = await one.add_user("r")
    sender = ImClient(
        f"tcp://127.0.0.1:{one.port}", one.token(sender_id), backoff_base=0.05, backoff_cap=0.3,
        state_file=str(tmp_path / "s.db"),
    )  # fmt: skip
    receiver = ImClient(
        f"tcp://127.0.0.1:{two.port}", two.token(receiver_id), backoff_base=0.05,
        backoff_cap=0.3, state_file=str(tmp_path / "r.db"),
    )  # fmt: skip
    got: list[Message] = []
    receiver.add_listener(lambda e: got.append(e) if isinstance(e, Message) else None)
    await sender.start()
    await receiver.start()
    n = 80
    answered: list[int] = []

    async def send_all() -> None:
        for i in range(n):
            answered.append((await sender.send_chat(to_user=receiver_id, body=f"m{i}")).seq)

    sending = asyncio.create_task(send_all())
    await until(lambda: _ready(len(answered) >= 20))
    one.crash()  # the sender's node: its client moves to another node, as behind a balancer
    sender.url = f"tcp://127.0.0.1:{three.port}"
    async with asyncio.timeout(TIMEOUT * 6):
        await sending
    await until(lambda: _ready(len(got) >= n), TIMEOUT * 6)
    bodies = [m.body for m in got]
    assert bodies == [f"m{i}" for i in range(n)]  # nothing lost, nothing twice, in order
    assert [m.seq for m in got] == sorted(answered)
    await sender.close()
    await receiver.close()


async def _ready(value: bool) -> bool:
    return value


async def test_presence_of_a_crashed_node_expires(cluster: Any) -> None:
    one, two = cluster(2)
    e, ce = await two.online("e")
    status, presence = await one.call("GET", f"/api/v1/users/{e}/online")
    assert (status, presence["connections"]) == (200, 1)
    two.crash()

    async def gone() -> bool:
        _, p = await one.call("GET", f"/api/v1/users/{e}/online")
        return bool(p["connections"] == 0)

    await until(gone, 20.0)  # the node's liveness runs out (10 s)
    _, page = await one.call("GET", "/api/v1/online")
    assert e not in [u["userId"] for u in page["users"]]


async def test_two_workers_share_the_port(
    postgres_db: Any, redis_server: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ, "IMHUB_DATA_DIR": str(tmp_path), "IMHUB_TOKEN_SECRET": SECRET,
        "IMHUB_API_KEY": API_KEY, "IMHUB_DATABASE_URL": postgres_db.url,
        "IMHUB_CLUSTER": redis_server.url, "IMHUB_PORT": "0", "IMHUB_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "imhub", "serve", "--workers", "2"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("imhub listening on"), line
        port = int(line.rsplit(":", 1)[1])
        node = Node.__new__(Node)
        node.url, node.port = f"http://127.0.0.1:{port}", port
        from imhub.service.auth import TokenAuthority

        node.auth = TokenAuthority(SECRET)
        users = [await node.add_user(f"w{i}") for i in range(16)]
        conns = []
        for u in users:
            conn = await TcpClient.connect(port)
            await conn.login(node.token(u))
            conns.append(conn)
        r = aioredis.Redis.from_url(redis_server.url)

        async def nodes_seen() -> set[bytes]:
            seen = set()
            for u in users:
                for field in await r.hkeys(f"imhub:p:{u}"):
                    seen.add(field.split(b":")[0])
            return seen

        async def both() -> bool:
            return len(await nodes_seen()) == 2

        await until(both, TIMEOUT)  # both workers took connections
        # A user on one worker chats with a user on the other.
        by_node: dict[bytes, list[int]] = {}
        for i, u in enumerate(users):
            field = (await r.hkeys(f"imhub:p:{u}"))[0]
            by_node.setdefault(field.split(b":")[0], []).append(i)
        x, y = (v[0] for v in by_node.values())
        answer = await conns[x].chat(users[y], "w1", "across workers")
        got = await conns[y].expect(7, TIMEOUT * 2)
        assert (got["seq"], got["body"]) == (answer["seq"], "across workers")
        await r.aclose()
    finally:
        proc.terminate()
        proc.wait(15)


async def test_news_a_dead_node_never_published_reaches_its_readers(
    postgres_db: Any, redis_server: Any, tmp_path: Path
) -> None:
    """A node that answered a message and died before its news left: the other nodes see it
    stop counting as alive and catch their connections up from storage."""
    proxy = await Proxy(redis_server.port).start()
    one = Node(tmp_path / "one", postgres_db, cluster=f"redis://127.0.0.1:{proxy.port}/0")
    two = Node(tmp_path / "two", postgres_db, cluster=redis_server.url)
    try:
        _, ca = await one.online("a")
        b, cb = await two.online("b")
        await ca.chat(b, "m0", "before")
        assert (await cb.expect(7, TIMEOUT * 2))["body"] == "before"
        proxy.blackhole = True  # from now on node one's news goes nowhere
        lost = await ca.chat(b, "m1", "after")  # stored and answered; its news lost
        one.crash()
        got = await cb.expect(7, 30.0)  # one's liveness runs out (10 s); two catches up
        assert (got["seq"], got["body"]) == (lost["seq"], "after")
        assert await cb.silent(0.5)
        assert "gone; catching up from storage" in two.log()
    finally:
        two.stop()
        await proxy.close()


async def test_presence_comes_back_after_a_node_pauses_past_its_liveness(cluster: Any) -> None:
    """A node frozen longer than its liveness (10 s) counts as dead, and a reader removes its
    connections meanwhile; once it runs again, it writes them again."""
    one, two = cluster(2)
    e, ce = await two.online("e")

    async def connections() -> int:
        _, p = await one.call("GET", f"/api/v1/users/{e}/online")
        return int(p["connections"])

    assert await connections() == 1
    os.kill(two.proc.pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(30.0):
            while await connections() != 0:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.5)  # (the reader removed the dead node's entries)
    finally:
        os.kill(two.proc.pid, signal.SIGCONT)

    async def back() -> bool:
        return await connections() == 1

    await until(back, 15.0)
    assert "liveness had lapsed" in two.log()
    await ce.close()
