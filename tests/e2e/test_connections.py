"""The one-port listener, timeouts and slow readers."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable

import aiohttp
import pytest
import websockets

from tests.helpers import TIMEOUT, ServerProcess, TcpClient


async def test_http_request_split_into_pieces(server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for i in range(0, len(request), 3):
        writer.write(request[i : i + 3])
        await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"status":"ok"' in response
    writer.close()


async def test_tcp_login_split_into_single_bytes(server: ServerProcess) -> None:
    user = await server.add_user("slowpoke")
    c = await TcpClient.connect(server.port)
    body = json.dumps({"msgType": 1, "token": server.token(user)}).encode()
    for byte in struct.pack(">I", len(body)) + body:
        await c.send_raw(bytes([byte]))
    assert (await c.expect(1))["userId"] == user


async def test_websocket_handshake_split_into_pieces(server: ServerProcess) -> None:
    """A proxy that forwards the client's bytes a few at a time to the server."""

    async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter, step: int) -> None:
        while data := await r.read(65536):
            for i in range(0, len(data), step):
                w.write(data[i : i + step])
                await w.drain()
        w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(relay(cr, sw, 5), relay(sr, cw, 65536), return_exceptions=True)

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    user = await server.add_user("pieces")
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"msgType": 1, "token": server.token(user)}))
        assert json.loads(await ws.recv())["userId"] == user
    proxy.close()


async def test_idle_connections_are_closed_and_heartbeats_keep_them(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(idle_timeout=1.0)
    _, quiet = await srv.online("quiet", "tcp")
    _, quiet_ws = await srv.online("quiet_ws", "ws")
    _, busy = await srv.online("busy", "ws")
    closed = asyncio.gather(quiet.closed(5), quiet_ws.closed(5))
    for _ in range(8):  # 2 s of heartbeats, twice the idle timeout
        await busy.send({"msgType": 0})
        await busy.expect(0)
        await asyncio.sleep(0.25)  # the client's heartbeat interval, not a wait for the server
    assert await closed == [True, True]
    await busy.send({"msgType": 0})
    await busy.expect(0)
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as resp:
        assert (await resp.json())["connections"] == 1  # the quiet ones are gone


async def test_connection_that_never_logs_in_is_closed(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(login_timeout=0.5)
    c = await srv.connect("tcp")
    await c.send({"msgType": 0})  # a heartbeat is not a login
    await c.expect(0)
    err = await c.expect(8)
    assert err["code"] == 408
    assert await c.closed()


async def test_silent_socket_is_closed(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(login_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_slow_reader_is_dropped_and_its_messages_wait(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(max_outbound=64 * 1024)
    _alice, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    slow = await srv.slow_reader(bob)

    # 7.5 MB for a reader that takes nothing: more than the kernel's socket buffers (4 MB
    # at most here) and the server's 64 KiB allowance together.
    body = "x" * 5000
    for i in range(1500):
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": body})
    answers = [await a.expect(4) for _ in range(1500)]  # the sender is served throughout
    assert len({x["msgIdServer"] for x in answers}) == 1500
    status, _ = await srv.post("/api/v1/users", {"username": "probe"})
    assert status == 201

    assert await slow.closed(10)  # dropped by the server, not grown without bound
    b = await srv.connect("tcp")
    login = await b.login(srv.token(bob))
    assert login["unread"][0]["count"] == 1500  # everything stays stored for later


async def test_a_heartbeat_answer_names_its_request(server: ServerProcess) -> None:
    _, c = await server.online("pinger")
    await c.send({"msgType": 0, "msgIdClient": "hb-17"})
    assert await c.expect(0) == {"msgType": 0, "code": 0, "msgIdClient": "hb-17"}
    await c.send({"msgType": 0})
    assert await c.expect(0) == {"msgType": 0, "code": 0}


async def test_a_peer_that_never_reads_its_backlog_is_cut_at_expiry(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Outside testing of issue 9: a TCP login whose backlog the peer never reads stayed open
    for ever (the graceful close at token expiry or idle timeout waited for the peer to take
    what was queued). It is cut within the grace of a close (the login timeout)."""
    srv = make_server(login_timeout=1.0)
    _, a = await srv.online("a")
    bob = await srv.add_user("bob")
    for i in range(100):  # 6 MB waiting for bob: more than the kernel buffers of a socket
        await a.chat(bob, f"m{i}", "x" * 60_000)
    await a.close()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    login = json.dumps({"msgType": 1, "token": srv.token(bob, ttl=2)}).encode()
    await asyncio.get_running_loop().sock_sendall(sock, struct.pack(">I", len(login)) + login)
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(15):  # expiry (2 s) + grace (1 s), with room for CI
            while True:
                async with http.get(srv.url + "/healthz") as resp:
                    if (await resp.json())["connections"] == 0:
                        break
                await asyncio.sleep(0.1)  # polling the server's count, not guessing a time
    # Reset, not closed: what bob never took is not left for the kernel to retry for minutes.
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(TIMEOUT):
            while await asyncio.get_running_loop().sock_recv(sock, 65536):
                continue  # what was in flight before the reset; the reset itself must come
    sock.close()
