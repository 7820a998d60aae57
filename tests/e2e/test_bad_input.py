"""Bad input gets a clear error, changes nothing, and leaves everyone else served.

Every server here keeps its log in a file, and no test may make it log a traceback, an error
or a warning: bad input is the peer's fault, not an incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imhub.gateway.server import BAD_REQUEST_LOG_BURST
from imhub.protocol import codec
from imhub.protocol.errors import ImError
from tests.databases import Database, Databases
from tests.helpers import API_KEY, TIMEOUT, Client, ServerProcess, TcpClient, WsClient
from tests.protocol.bad_payloads import ECHOED, UNDECODABLE, corrupted, json_values, near_json


class WatchedServer(ServerProcess):
    """A server (logging at INFO) whose log is kept in a file, to check what it logged."""

    def __init__(self, data_dir: Path, databases: Databases | Database, **options: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "server.log"
        self.stderr = self.log_path.open("ab")
        super().__init__(data_dir, databases, **{"log_level": "INFO", **options})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        super().stop()
        self.stderr.close()
        assert_quiet(self.log())  # no traceback, nothing at WARNING or above, to the end


# The tests' PostgreSQL and MariaDB run without flushing on purpose (speed), and the server
# says at start that `fsync` is then not met: the one warning these logs may hold.
VOLATILE_TEST_DATABASE = "durability fsync asked, but"


def assert_quiet(log: str) -> None:
    log = "\n".join(line for line in log.splitlines() if VOLATILE_TEST_DATABASE not in line)
    for mark in ("Traceback", " ERROR ", " WARNING ", " CRITICAL "):
        assert mark not in log, log


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[WatchedServer]:
    """This module's shared server (instead of the session's): one whose log is watched."""
    proc = WatchedServer(tmp_path_factory.mktemp("watched"), databases)
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def quiet_log(server: WatchedServer) -> Iterator[None]:
    start = len(server.log())
    yield
    assert_quiet(server.log()[start:])


@pytest.fixture
def server_class() -> type[ServerProcess]:
    """Servers of a test's own are watched like the shared one (``WatchedServer.stop``)."""
    return WatchedServer


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


HEARTBEAT = b'{"msgType":0}'


def human(reason: str) -> bool:
    """No object dumps in a reason: ``Conv(chat_id=None, …)``, ``<… object at 0x…>``."""
    return not re.search(r"\b[A-Z]\w*\(\w+=|object at 0x", reason)


async def connections(server: ServerProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
        return int((await resp.json())["connections"])


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


# Every undecodable input is a clean 400, and what follows it is handled.


@pytest.mark.parametrize("name", UNDECODABLE)
async def test_undecodable_frame_gets_400_and_the_next_frame_in_the_same_write_is_served(
    server: WatchedServer, name: str
) -> None:
    _, a = await server.online("alice")
    assert isinstance(a, TcpClient)
    await a.send_raw(frame(UNDECODABLE[name]) + frame(HEARTBEAT))
    err = await a.expect(8)
    assert err["code"] == 400 and human(err["reason"]), err
    assert err.get("msgIdClient") == ECHOED.get(name)
    await a.expect(0)


@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("name", UNDECODABLE)
async def test_undecodable_websocket_message_gets_400_and_the_connection_stays_open(
    server: WatchedServer, name: str, kind: str
) -> None:
    _, a = await server.online("alice", "ws")
    assert isinstance(a, WsClient)
    await a.ws.send(UNDECODABLE[name], text=kind == "text")
    err = await a.expect(8)
    assert err["code"] == 400 and human(err["reason"]), err
    await a.send({"msgType": 0})
    await a.expect(0)


async def test_login_bad_frame_and_heartbeat_in_one_write_then_hang_up(
    make_server: Callable[..., WatchedServer],
) -> None:
    """The issue's wedge: the frames after a login arrive while it is handled."""
    srv = make_server()
    user = await srv.add_user("alice")
    c = await srv.connect("tcp")
    assert isinstance(c, TcpClient)
    login = json.dumps({"msgType": 1, "token": srv.token(user)}).encode()
    bad = UNDECODABLE["invalid UTF-8 in a string"]
    await c.send_raw(frame(login) + frame(bad) + frame(HEARTBEAT))
    assert (await c.expect(1))["code"] == 0
    assert (await c.expect(8))["code"] == 400
    await c.expect(0)
    assert await connections(srv) == 1
    await c.close()  # the peer hangs up: it is no longer counted
    async with asyncio.timeout(TIMEOUT):
        # The count is all a client can see of it: poll it (with a deadline) until it drops.
        while await connections(srv):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_frames_before_an_oversized_one_in_the_same_write_are_served(
    make_server: Callable[..., WatchedServer],
) -> None:
    srv = make_server(max_frame=1024)
    _, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    assert isinstance(a, TcpClient)
    chats = [
        frame(
            json.dumps(
                {"msgType": 3, "toUserId": bob, "msgIdClient": f"c{i}", "body": "x"}
            ).encode()
        )
        for i in range(3)
    ]  # their answers wait for storage: they still come before the 413 and the close
    await a.send_raw(b"".join(chats) + frame(HEARTBEAT) + struct.pack(">I", 1025) + b"x" * 100)
    answers = [await a.recv() for _ in range(5)]
    assert sorted(m["msgType"] for m in answers) == [0, 4, 4, 4, 8], answers
    assert answers[-1]["code"] == 413
    assert await a.closed()


def refused(payload: bytes) -> bool:
    try:
        codec.decode(payload)
    except ImError:
        return True
    return False


GARBAGE = (
    st.binary(max_size=100) | near_json() | corrupted(json_values(max_leaves=8)) | st.just(b"")
).filter(refused)
# None stands for a heartbeat: the items a connection sends, each answered in order.
ITEMS = st.lists(st.none() | GARBAGE, min_size=1, max_size=6)


async def answers_in_order(client: Client, items: list[bytes | None]) -> None:
    for item in items:
        got = await client.recv()
        assert got["msgType"] == (0 if item is None else 8), (item, got)
        if item is not None:
            assert got["code"] == 400


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=ITEMS, cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8))
async def test_any_frames_split_anywhere_get_one_answer_each_in_order(
    server: WatchedServer, items: list[bytes | None], cuts: list[int]
) -> None:
    stream = b"".join(frame(HEARTBEAT if i is None else i) for i in items)
    points = sorted({min(c, len(stream)) for c in cuts})
    c = await server.connect("tcp")
    assert isinstance(c, TcpClient)
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        await c.send_raw(stream[a:b])
    await answers_in_order(c, items)
    await c.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=ITEMS, text=st.lists(st.booleans(), min_size=6, max_size=6))
async def test_any_websocket_messages_get_one_answer_each_in_order(
    server: WatchedServer, items: list[bytes | None], text: list[bool]
) -> None:
    c = await server.connect("ws")
    assert isinstance(c, WsClient)
    for item, as_text in zip(items, text, strict=False):
        await c.ws.send(HEARTBEAT if item is None else item, text=as_text)
    await answers_in_order(c, items)
    await c.close()


async def test_error_reasons_name_things_as_people_do(server: WatchedServer) -> None:
    _, a = await server.online("alice")
    await a.send({"msgType": 14, "chatId": 10**12})
    assert (await a.expect(8))["reason"] == "no chat 1000000000000 of yours"
    await a.send({"msgType": 14, "teamId": 10**12})
    assert (await a.expect(8))["reason"] == "no group 1000000000000"


# The HTTP API: a JSON 4xx with code and reason, never a plain-text 500.

ROUTES = ["/api/v1/notices", "/api/v1/users", "/api/v1/tokens", "/api/v1/teams/create"]


async def post_bytes(server: ServerProcess, path: str, data: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + path, data=data, headers=headers) as resp,
    ):
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


@pytest.mark.parametrize("path", ROUTES)
async def test_undecodable_http_bodies_get_a_json_400(server: WatchedServer, path: str) -> None:
    for name, payload in UNDECODABLE.items():
        status, body = await post_bytes(server, path, payload)
        assert status == 400 and body["code"] == 400, (name, body)
        assert body["reason"] and human(body["reason"]), body


async def test_numbers_out_of_range_on_the_http_api_are_refused_up_front(
    server: WatchedServer,
) -> None:
    user = await server.add_user("target")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/notices", {"toUserIds": [user], "body": "x", "bodyType": 2**63}),
        ("/api/v1/notices", {"toUserIds": [user], "body": "x", "bodyType": 2**31}),
        ("/api/v1/notices", {"toUserIds": [user], "body": "x", "bodyType": -1}),
        ("/api/v1/notices", {"toUserIds": [2**64], "body": "x"}),
        ("/api/v1/notices", {"toUserIds": [user], "body": "x", "fromUserId": 2**53}),
        ("/api/v1/tokens", {"userId": user, "ttl": 2**63}),
        ("/api/v1/tokens", {"userId": user, "ttl": 2**31}),
        ("/api/v1/tokens", {"userId": user, "ttl": 0}),
        ("/api/v1/tokens", {"userId": 2**64}),
        ("/api/v1/teams/create", {"userId": user, "teamName": "t", "memberIds": [2**64]}),
        ("/api/v1/teams/add", {"userId": user, "teamId": 2**63, "memberIds": [user]}),
    ]
    notices = server.count("select count(*) from notice")
    for path, body in cases:
        status, answer = await post_bytes(server, path, json.dumps(body).encode())
        assert status == 400 and answer["code"] == 400, (path, body, answer)
        assert "$." in answer["reason"], answer  # it names the field
    assert server.count("select count(*) from notice") == notices
    status, answer = await server.post("/api/v1/notices", {"toUserIds": [user], "body": "ok"})
    assert status == 200, answer


async def raw_http(server: ServerProcess, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
    b"POST /api/v1/notices HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTX/1.1\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
]


async def test_malformed_http_requests_get_a_json_400_and_one_info_line_at_most(
    make_server: Callable[..., WatchedServer],
) -> None:
    srv = make_server()
    for request in MALFORMED * 3:
        response = await raw_http(srv, request)
        head, _, body = response.partition(b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", head), response
        assert json.loads(body)["code"] == 400, response
    lines = [line for line in srv.log().splitlines() if "malformed HTTP request" in line]
    assert 0 < len(lines) <= BAD_REQUEST_LOG_BURST
    assert all(" INFO " in line for line in lines), lines
    assert_quiet(srv.log())  # no traceback, nothing at ERROR
    assert await connections(srv) == 0  # and the server is fine


UNREADABLE = [  # well-formed requests whose body or key cannot be read (outside testing)
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n"
    b"Connection: close\r\n\r\nabcd",
    b"POST /api/v1/notices HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 4\r\nConnection: close\r\n\r\nabcd",
    b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nX-Api-Key: key\xe9\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
]


async def test_unreadable_bodies_and_keys_are_a_json_4xx(
    make_server: Callable[..., WatchedServer],
) -> None:
    srv = make_server()
    statuses = []
    for request in UNREADABLE * 2:
        response = await raw_http(srv, request)
        head, _, body = response.partition(b"\r\n\r\n")
        statuses.append(int(head.split()[1]))
        assert json.loads(body)["code"] == statuses[-1], response
    assert statuses == [400, 400, 401, 401] * 2
    assert_quiet(srv.log())  # no traceback, nothing at ERROR


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` forever, one byte every 0.1 s (the peer's pace, not a wait for us)."""
    for byte in itertools.cycle(data):
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.1)


async def dribble(server: ServerProcess, head: bytes, slowly: bytes) -> tuple[float, bytes]:
    """Send ``head`` at once, then ``slowly`` byte by byte until the server closes; how long
    until the server cut it short (answered or closed), and all it answered."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head)
    start = loop.time()
    task = asyncio.create_task(trickle(writer, slowly))
    received = b""
    cut = None
    try:
        async with asyncio.timeout(TIMEOUT):
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    if cut is None and not data.startswith(b"HTTP/1.1 200"):
                        cut = loop.time() - start
                    received += data
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        writer.close()
    return (loop.time() - start if cut is None else cut), received


HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
ENDLESS = b"X-Endless-Header-Name-"  # a header line that never ends (no colon, no CRLF)


@pytest.mark.parametrize(
    ("head", "slowly", "answer"),
    [
        (HEAD, ENDLESS, b""),  # the first request's head
        (HEAD + b"\r\n" + HEAD, ENDLESS, b"HTTP/1.1 200"),  # the next request's head
        (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
            b"x",
            b"HTTP/1.1 408",  # a body trickled in
        ),
    ],
    ids=["head", "next-head", "body"],
)
async def test_http_requests_trickled_in_are_cut_at_the_login_deadline(
    make_server: Callable[..., WatchedServer], head: bytes, slowly: bytes, answer: bytes
) -> None:
    srv = make_server(login_timeout=1)
    results = await asyncio.gather(*(dribble(srv, head, slowly) for _ in range(20)))
    for took, received in results:
        # Cut at the deadline of 1 s (aiohttp would keep them 75 s); a margin for slow CI.
        assert 0.9 < took < 1 + 1.5
        assert received.startswith(answer), received
        if answer:
            assert received.count(b"HTTP/1.1 ") == 1  # nothing after the trickled request
    assert await connections(srv) == 0


def test_the_start_warns_when_the_database_does_not_flush_what_fsync_promises(
    server: WatchedServer,
) -> None:
    """``durability fsync`` (the default) on a database server that does not flush at commit
    (the tests' PostgreSQL and MariaDB, on purpose) is said as a WARNING at start; on SQLite,
    which imhub sets itself, there is nothing to warn about."""
    warned = [line for line in server.log().splitlines() if VOLATILE_TEST_DATABASE in line]
    if server.backend == "sqlite":
        assert warned == []
    else:
        assert len(warned) == 1 and " WARNING " in warned[0], warned
        assert "a commit does not wait for the disk" in warned[0]
