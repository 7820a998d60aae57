"""The limits (docs/security.md, "Limits") over real sockets: each refuses with its code,
stores nothing of what it refused, and leaves other users served.

Rates here are tiny (0.01 per second), so what a test counts does not depend on how fast a
loaded machine runs it: the buckets hold their bursts and, in effect, never refill."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import websockets

from tests.databases import Databases
from tests.helpers import API_KEY, Client, ServerProcess, TcpClient, WsClient

SLOW = "0.01"  # per second: no refill within a test


async def tcp_from(host: str, port: int) -> TcpClient:
    """A TCP connection from another loopback address (127.0.0.2 is this host too)."""
    return TcpClient(*await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0)))


async def refused(client: TcpClient) -> bool:
    """True when the server closed the connection at once, without a word."""
    try:
        return await client.closed(3)
    except TimeoutError:
        return False


async def until_closed(client: Client) -> list[dict[str, Any]]:
    """Everything the server sends until it closes the connection."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        try:
            while True:
                got.append(await client.recv())
        except (asyncio.IncompleteReadError, ConnectionError, websockets.ConnectionClosed):
            return got


async def admitted(port: int, host: str = "127.0.0.1") -> TcpClient:
    """A connection the server serves, once it has seen an earlier one close (the refused
    attempts before it cost nothing: they are refused by count)."""

    async def attempt() -> TcpClient | None:
        conn = await tcp_from(host, port)
        try:
            await conn.send({"msgType": 0})
            await conn.expect(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return conn

    async with asyncio.timeout(15):
        while (conn := await attempt()) is None:
            continue
    return conn


async def served(srv: ServerProcess, client: Any, to: int, mid: str) -> None:
    """``client`` (logged in) can still send and get its answer."""
    await client.send({"msgType": 3, "toUserId": to, "msgIdClient": mid, "body": "served"})
    answer = await client.next_of(lambda m: m.get("msgIdClient") == mid and m["msgType"] != 7)
    assert (answer["msgType"], answer["code"]) == (4, 0)


@pytest.fixture(scope="module")
def rated(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[ServerProcess]:
    """One server for the tests of message rates, connections per user, group size and
    body size (each test makes its own users)."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("rated"),
        databases,
        msg_rate=SLOW,
        msg_burst=5,
        user_msg_rate=SLOW,
        user_msg_burst=7,
        max_connections_per_user=3,
        max_group=4,
        max_frame=2000,
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize("via", ["tcp", "ws"])
async def test_a_flooding_connection_is_refused_then_closed(rated: ServerProcess, via: str) -> None:
    alice = await rated.add_user("alice")
    bob, b = await rated.online("bob")
    a = await rated.connect(via)
    await a.login(rated.token(alice))  # the login takes one of the 5
    for i in range(20):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": "x"})
    got = await until_closed(a)
    answers = [x["msgIdClient"] for x in got if x["msgType"] == 4]
    assert answers == ["m0", "m1", "m2", "m3"]
    # Refused (429, with the msgIdClient of each; the refusals come at once, the answers
    # once stored) while the refusals stay within a burst, and then closed: persistent
    # excess. The rest was not read.
    refusals = [(x["code"], x.get("msgIdClient")) for x in got if x["msgType"] == 8]
    assert refusals == [(429, f"m{i}") for i in range(4, 10)] + [(429, None)]
    assert got[-1]["msgType"] == 8  # the close comes after the answers

    got = [await b.expect(7) for _ in range(4)]
    assert [m["msgIdClient"] for m in got] == ["m0", "m1", "m2", "m3"]
    sql = "SELECT COUNT(*) FROM person_msg WHERE from_user_id = ?"
    assert rated.count(sql, alice) == 4  # nothing of the refused ones was stored
    carol, c = await rated.online("carol")
    await served(rated, c, bob, "c1")
    await served(rated, b, carol, "b1")


async def test_a_users_connections_share_one_budget(rated: ServerProcess) -> None:
    dave = await rated.add_user("dave")
    erin, e = await rated.online("erin")
    first = await rated.connect()
    await first.login(rated.token(dave))
    for i in range(4):  # the first connection's 5 (with its login): 4 of the user's 7
        await served(rated, first, erin, f"a{i}")
    second = await rated.connect()
    await second.login(rated.token(dave))
    for i in range(3):  # (its own copies of the first's messages come first)
        await served(rated, second, erin, f"b{i}")
    await second.send({"msgType": 3, "toUserId": erin, "msgIdClient": "b3", "body": "x"})
    refusal = await second.next_of(lambda m: m["msgType"] == 8)
    assert (refusal["code"], refusal["msgIdClient"]) == (429, "b3")
    await second.send({"msgType": 0})  # one refusal is no flood: the connection goes on
    assert (await second.expect(8))["code"] == 429
    sql = "SELECT COUNT(*) FROM person_msg WHERE from_user_id = ?"
    assert rated.count(sql, dave) == 7
    await served(rated, e, dave, "e1")


async def test_connections_per_user(rated: ServerProcess) -> None:
    frank = await rated.add_user("frank")
    others, o = await rated.online("others")
    conns = []
    for _ in range(3):
        conn = await rated.connect()
        await conn.login(rated.token(frank))
        conns.append(conn)
    extra = await rated.connect("ws")
    await extra.send({"msgType": 1, "token": rated.token(frank)})
    answer = await extra.expect(8)
    assert answer["code"] == 429 and "too many connections" in answer["reason"]
    assert await extra.closed()
    await served(rated, o, frank, "o1")
    await conns[0].close()

    async def login_again() -> None:  # as soon as the server has seen the close
        while True:
            again = await rated.connect()
            await again.send({"msgType": 1, "token": rated.token(frank)})
            if (await again.recv())["code"] == 0:
                return
            await again.closed()

    await asyncio.wait_for(login_again(), 10)
    assert others != frank


async def test_group_size(rated: ServerProcess) -> None:
    owner, o = await rated.online("owner")
    ids = [await rated.add_user(f"m{i}") for i in range(4)]
    await o.send({"msgType": 16, "teamName": "big", "memberIds": ids, "msgIdClient": "t1"})
    answer = await o.expect(8)  # the owner and 4: over 4
    assert (answer["code"], answer["msgIdClient"]) == (400, "t1")
    assert "at most 4 members" in answer["reason"]
    assert rated.count("SELECT COUNT(*) FROM team") == 0
    await o.send({"msgType": 16, "teamName": "ok", "memberIds": ids[:3]})
    team = (await o.answer(16))["teamId"]
    await o.send({"msgType": 17, "teamId": team, "memberIds": ids[3:], "msgIdClient": "t2"})
    answer = await o.next_of(lambda m: m["msgType"] == 8)
    assert (answer["code"], answer["msgIdClient"]) == (409, "t2")
    assert "group full" in answer["reason"]
    status, body = await rated.call("GET", f"/api/v1/teams/{team}")
    assert status == 200 and len(body["memberIds"]) == 4
    await served(rated, o, ids[0], "o1")


async def test_max_frame_holds_an_http_body_that_carries_a_message(rated: ServerProcess) -> None:
    """--max-frame (2000 here) on every transport: a TCP frame, and a notice's body."""
    to = await rated.add_user("target")
    body = {"toUserIds": [to], "body": "n" * 2100}
    status, answer = await rated.post("/api/v1/notices", body)
    assert status == 413, answer
    assert answer["code"] == 413
    assert rated.count("SELECT COUNT(*) FROM notice") == 0
    body["body"] = "n" * 1800
    status, answer = await rated.post("/api/v1/notices", body)
    assert status == 200, answer
    # Bodies that carry no message keep their own limit (1 MiB).
    status, answer = await rated.post("/api/v1/users", {"username": "u", "mobile": "1" * 5000})
    assert status == 400 and "mobile" in answer["reason"]

    sender, s = await rated.online("sender")
    await s.send({"msgType": 3, "toUserId": to, "msgIdClient": "big", "body": "y" * 2000})
    assert (await s.expect(8))["code"] == 413
    assert await s.closed()


async def test_connections_per_address_and_their_rate(
    make_server: Callable[..., ServerProcess],
) -> None:
    """127.0.0.1 is exempt (a proxy, the tests); 127.0.0.2 gets 2 at once, 4 in a burst."""
    srv = make_server(
        max_connections_per_address=2,
        connect_rate=SLOW,
        connect_burst=4,
        limit_exempt="127.0.0.1",
        login_timeout=60,
    )
    alice, a = await srv.online("alice")
    bob, b = await srv.online("bob")
    one = await tcp_from("127.0.0.2", srv.port)
    two = await tcp_from("127.0.0.2", srv.port)
    three = await tcp_from("127.0.0.2", srv.port)
    assert await refused(three)  # the third at once
    await one.login(srv.token(alice))
    await two.login(srv.token(alice))
    await served(srv, a, bob, "a1")
    await one.close()
    again = await admitted(srv.port, "127.0.0.2")  # the burst's 3rd
    await again.close()
    await two.close()
    last = await admitted(srv.port, "127.0.0.2")  # the 4th
    await last.close()
    # The burst is spent: refused however few are open.
    assert await refused(await tcp_from("127.0.0.2", srv.port))
    await served(srv, b, alice, "b1")
    status, text = await metrics(srv)
    found = re.search(r"^imhub_refused_connections_total (\S+)$", text, re.M)
    assert found is not None and float(found[1]) >= 2


async def test_connections_in_all(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(max_connections=3, login_timeout=60)
    conns = [await TcpClient.connect(srv.port) for _ in range(3)]  # exempt: only the total
    assert await refused(await TcpClient.connect(srv.port))
    await conns[1].send({"msgType": 0})  # the open ones are served
    assert (await conns[1].expect(0))["code"] == 0
    await conns[0].close()
    fourth = await admitted(srv.port)
    await fourth.close()
    for conn in conns[1:]:
        await conn.close()


async def test_api_requests_per_key(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(api_rate=SLOW, api_burst=3)
    users = [await srv.add_user(f"u{i}") for i in range(3)]
    status, body = await srv.post("/api/v1/users", {"username": "one too many"})
    assert status == 429 and body["code"] == 429
    assert srv.count("SELECT COUNT(*) FROM users") == 3
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.url + f"/api/v1/users/{users[0]}", headers={"X-Api-Key": API_KEY}) as resp,
    ):
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
    # No key: a 401 as ever (the key's budget is not anyone's to spend).
    status, body = await srv.post("/api/v1/users", {"username": "x"}, api_key=None)
    assert status == 401
    status, _ = await srv.call("GET", "/healthz", api_key=None)  # no key, no limit
    assert status == 200
    # Users keep chatting: the limit is the API's.
    a = await srv.connect()
    await a.login(srv.token(users[0]))
    await served(srv, a, users[1], "m1")


async def metrics(srv: ServerProcess) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/metrics") as resp:
        return resp.status, await resp.text()


async def test_a_websocket_client_that_never_reads_is_dropped_and_its_messages_wait(
    make_server: Callable[..., ServerProcess],
) -> None:
    """--max-outbound end to end on WebSocket (tests/e2e/test_connections.py has it on TCP):
    a peer that takes nothing is cut past the bound, the sender is served throughout, and
    everything waits in storage for the next login."""
    srv = make_server(max_outbound=64 * 1024)
    _alice, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    ws = await websockets.connect(f"ws://127.0.0.1:{srv.port}/ws", sock=sock, max_queue=1)
    slow = WsClient(ws)
    await slow.login(srv.token(bob))
    body = "x" * 5000  # 7.5 MB: more than the kernel's buffers and the 64 KiB allowance
    for i in range(1500):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": body})
    answers = [await a.expect(4) for _ in range(1500)]
    assert len({x["msgIdServer"] for x in answers}) == 1500
    status, text = await metrics(srv)
    found = re.search(r"^imhub_slow_consumers_dropped_total (\S+)$", text, re.M)
    assert found is not None and float(found[1]) == 1  # cut, not grown without bound
    assert await slow.closed(10)
    again = await srv.connect("ws")
    await again.send({"msgType": 1, "token": srv.token(bob), "backlog": False})
    assert (await again.expect(1))["unread"][0]["count"] == 1500
    await again.close()


async def test_undecodable_messages_count_too(rated: ServerProcess) -> None:
    """A flood of junk is limited like one of messages (and costs no more than its burst)."""
    junk = await TcpClient.connect(rated.port)
    for _ in range(5):
        await junk.send_raw(struct.pack(">I", 3) + b"{{{")
    assert [(await junk.expect(8))["code"] for _ in range(5)] == [400] * 5
    await junk.send_raw(struct.pack(">I", 3) + b"{{{")
    assert (await junk.expect(8))["code"] == 429
    _, other = await rated.online("bystander")
    await other.send({"msgType": 0})
    assert (await other.expect(0))["code"] == 0


async def test_a_connection_that_does_not_log_in_gets_ten_messages(
    server: ServerProcess,
) -> None:
    """Before its login a connection may send 10 messages (a login and a few heartbeats):
    a peer without a token does not get a whole burst of the server's time. The 11th is
    refused and the connection closed."""
    bob, b = await server.online("bob")
    anon = await server.connect()
    for i in range(12):
        await anon.send({"msgType": 0, "msgIdClient": f"h{i}"})
    got = await until_closed(anon)
    assert [x["msgIdClient"] for x in got if x["msgType"] == 0] == [f"h{i}" for i in range(10)]
    assert [(x["msgType"], x["code"]) for x in got[10:]] == [(8, 429), (8, 429)]
    alice, a = await server.online("alice")  # others are served, and a login counts once
    for i in range(12):
        await a.send({"msgType": 0, "msgIdClient": f"a{i}"})
    assert (await a.next_of(lambda m: m.get("msgIdClient") == "a11"))["code"] == 0
    await served(server, a, bob, "a-chat")


async def test_messages_per_address(make_server: Callable[..., ServerProcess]) -> None:
    """Users from one address share its budget (4 here); another address has its own."""
    srv = make_server(address_msg_rate=SLOW, address_msg_burst=4, limit_exempt="")
    alice, bob, carol = [await srv.add_user(n) for n in ("alice", "bob", "carol")]
    a = await tcp_from("127.0.0.2", srv.port)
    await a.login(srv.token(alice))  # 1
    b = await tcp_from("127.0.0.2", srv.port)
    await b.login(srv.token(bob))  # 2
    await served(srv, a, carol, "a1")  # 3
    await served(srv, b, carol, "b1")  # 4: the address's burst is spent
    await b.send({"msgType": 3, "toUserId": carol, "msgIdClient": "b2", "body": "x"})
    refusal = await b.next_of(lambda m: m.get("msgIdClient") == "b2")
    assert (refusal["msgType"], refusal["code"]) == (8, 429)
    sql = "SELECT COUNT(*) FROM person_msg WHERE from_user_id = ?"
    assert srv.count(sql, bob) == 1
    c = await tcp_from("127.0.0.3", srv.port)
    await c.login(srv.token(carol))
    await served(srv, c, alice, "c1")


async def test_http_requests_without_the_key_per_address(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Public routes, no key and a wrong key share a budget per address (3 here); requests
    with the key are the key's business."""
    srv = make_server(http_rate=SLOW, http_burst=3, limit_exempt="")
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def get(path: str, key: str | None) -> aiohttp.ClientResponse:
            headers = {"X-Api-Key": key} if key else {}
            async with http.get(srv.url + path, headers=headers) as resp:
                await resp.read()
                return resp

        assert (await get("/healthz", None)).status == 200
        assert (await get("/api/v1/openapi.json", None)).status == 200
        assert (await get("/api/v1/online", "wrong")).status == 401
        refused = await get("/healthz", None)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Connection"].lower() == "close"  # pipelining ends here
        assert (await get("/api/v1/online", "wrong")).status == 429
        assert (await get("/api/v1/online", API_KEY)).status == 200
    status, _ = await srv.call("GET", "/healthz", api_key=None)  # another address: served
    assert status == 200
