"""TLS on the same port: TCP frames, WebSocket and HTTP inside TLS beside the plain ones, bad
and slow handshakes closed quietly, TLS only, and certificates checked at start. The
certificates come from a throw-away CA (trustme)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets
from click.testing import CliRunner

from imhub.cli import main
from imhub.client import ImClient
from tests.client.test_terminal import terminal
from tests.databases import Databases
from tests.e2e.test_bad_input import WatchedServer
from tests.helpers import API_KEY, TIMEOUT, Client, ServerProcess, TcpClient, WsClient
from tests.tls import Certs

LOGIN_TIMEOUT = 3.0  # the servers' here: it bounds a handshake too


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, certs: Certs
) -> Iterator[WatchedServer]:
    """A server with TLS and plain on one port, whose log must stay free of tracebacks. Its
    certificate names localhost and 127.0.0.1: clients check one or the other."""
    proc = WatchedServer(
        tmp_path_factory.mktemp("tls"),
        databases,
        tls_cert=certs.cert,
        tls_key=certs.key,
        login_timeout=LOGIN_TIMEOUT,
    )
    yield proc
    proc.stop()


async def tls_tcp(port: int, context: ssl.SSLContext, host: str = "localhost") -> TcpClient:
    return TcpClient(
        *await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=host)
    )


async def tls_ws(port: int, context: ssl.SSLContext) -> WsClient:
    url = f"wss://localhost:{port}/ws"
    sock = socket.create_connection(("127.0.0.1", port))  # localhost may not resolve to it
    return WsClient(await websockets.connect(url, ssl=context, sock=sock, max_size=None))


async def test_tcp_frames_websocket_and_plain_chat_on_one_port(
    tls_server: WatchedServer, certs: Certs
) -> None:
    port, context = tls_server.port, certs.client_context()
    ids = [await tls_server.add_user(name) for name in ("tcps", "wss", "plain")]
    clients: list[Client] = [
        await tls_tcp(port, context),
        await tls_ws(port, context),
        await tls_server.connect("tcp"),
    ]
    for user_id, client in zip(ids, clients, strict=True):
        await client.login(tls_server.token(user_id))
    for n, sender in enumerate(clients):
        to = ids[(n + 1) % 3]
        await sender.chat(to, f"m{n}", f"hello over {n}")
        got = await clients[(n + 1) % 3].expect(7)  # a notice carrying it
        assert got["body"] == f"hello over {n}"
    assert isinstance(clients[0], TcpClient)
    assert clients[0].writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    for client in clients:
        await client.close()


async def test_http_api_and_browser_client_over_https(
    tls_server: WatchedServer, certs: Certs
) -> None:
    connector = aiohttp.TCPConnector(ssl=certs.client_context())
    base = f"https://127.0.0.1:{tls_server.port}"
    async with aiohttp.ClientSession(connector=connector) as http:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(base + "/api/v1/users", json={"username": "h"}, headers=headers) as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["userId"] > 0
        async with http.get(base + "/") as r:
            assert r.status == 200
            assert "<html" in (await r.text()).lower()
    async with aiohttp.ClientSession() as http, http.get(tls_server.url + "/healthz") as r:
        assert r.status == 200  # plain HTTP on the same port


async def test_python_client_over_tcps_and_wss(tls_server: WatchedServer, certs: Certs) -> None:
    a, b = await tls_server.add_user("a"), await tls_server.add_user("b")
    port = tls_server.port
    clients = [
        ImClient(
            f"tcps://127.0.0.1:{port}", tls_server.token(a), ssl_context=certs.client_context()
        ),
        ImClient(
            f"wss://127.0.0.1:{port}/ws", tls_server.token(b), ssl_context=certs.client_context()
        ),
    ]
    try:
        for client in clients:
            await client.start()
        sent = await clients[0].send_chat(to_user=b, body="over tls")
        assert sent.seq >= 1
        sent = await clients[1].send_chat(to_user=a, body="and back")
        assert sent.seq >= 1
    finally:
        for client in clients:
            await client.close()


async def test_a_tls_reader_that_never_reads_is_dropped(
    make_server: Callable[..., ServerProcess], certs: Certs
) -> None:
    """The outbound bound counts what waits inside the TLS layer too: a TLS peer that takes
    nothing is dropped, not buffered without end, and its messages wait in storage."""
    srv = make_server(max_outbound=64 * 1024, tls_cert=certs.cert, tls_key=certs.key)
    _, a = await srv.online("alice")
    bob = await srv.add_user("bob")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    slow = TcpClient(
        *await asyncio.open_connection(
            sock=sock, ssl=certs.client_context(), server_hostname="localhost"
        )
    )
    await slow.login(srv.token(bob))
    body = "x" * 5000
    for i in range(1500):  # 7.5 MB: more than the socket buffers and the allowance together
        await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"m{i}", "body": body})
    answers = [await a.expect(4) for _ in range(1500)]
    assert len({x["msgIdServer"] for x in answers}) == 1500
    got = 0
    with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
        while True:  # what it was sent before the drop, then the end (not a timeout)
            got += (await slow.recv(timeout=TIMEOUT * 2))["msgType"] == 7
    assert got < 1500
    b = await tls_tcp(srv.port, certs.client_context())
    await b.send({"msgType": 1, "token": srv.token(bob), "backlog": False})  # no 7.5 MB
    login = await b.expect(1)
    assert login["unread"][0]["count"] == 1500
    for client in (a, b, slow):
        await client.close()


def test_the_terminal_client_trusts_a_ca_file(tls_server: WatchedServer, certs: Certs) -> None:
    alice, bob = tls_server.add_user_blocking("alice"), tls_server.add_user_blocking("bob")
    address = f"tcps://127.0.0.1:{tls_server.port}"
    a = terminal(tls_server, address, alice, "--ca", str(certs.ca_file))
    try:
        a.sendline(f"/open user {bob}")
        a.expect(r"opened chat (\d+) with user")
        a.sendline("hello over tcps")
        a.expect("sent #1")
    finally:
        a.terminate(force=True)


async def test_a_client_checks_the_host_name(tls_server: WatchedServer, certs: Certs) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await tls_tcp(tls_server.port, certs.client_context(), host="imhub.example")
    with pytest.raises(ssl.SSLCertVerificationError):  # a CA it does not trust
        await tls_tcp(tls_server.port, ssl.create_default_context())


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server still sends until it closes the connection (bounded in time)."""
    got = b""
    async with asyncio.timeout(TIMEOUT + LOGIN_TIMEOUT):
        with contextlib.suppress(ConnectionError):  # a reset ends it as well as an EOF
            while chunk := await reader.read(65536):
                got += chunk
    return got


@pytest.mark.parametrize(
    "first",
    [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record holding no ClientHello
        b"\x16" + os.urandom(600),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a ClientHello cut short
    ],
    ids=["garbage", "random", "half"],
)
async def test_bad_and_unfinished_handshakes_are_closed_quietly(
    tls_server: WatchedServer, certs: Certs, first: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    writer.write(first)  # the half ClientHello: then nothing more, until the login timeout
    await closed_by_server(reader)
    writer.close()
    # The server goes on serving TLS (and its log is checked at the end: no traceback).
    client = await tls_tcp(tls_server.port, certs.client_context())
    user_id = await tls_server.add_user("after")
    await client.login(tls_server.token(user_id))
    await client.close()


def garbage_after_handshake(port: int, context: ssl.SSLContext) -> bytes:
    """Complete a handshake, then write a bad TLS record on the raw socket (a forged or
    corrupted one); what the server still sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=True)
        tls.sendall(b"\x00")  # the first byte of a frame: the server sniffs TCP frames
        raw_again = socket.socket(fileno=os.dup(tls.fileno()))
        with raw_again:
            raw_again.settimeout(TIMEOUT)
            raw_again.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # a forged record
            got = b""
            with contextlib.suppress(ConnectionError):  # a reset ends it as well as an EOF
                while chunk := raw_again.recv(65536):
                    got += chunk
        tls.close()
        return got


async def test_a_forged_record_after_the_handshake_is_closed_quietly(
    tls_server: WatchedServer, certs: Certs
) -> None:
    await asyncio.to_thread(garbage_after_handshake, tls_server.port, certs.client_context())
    status, _ = await tls_server.call("GET", "/healthz")  # still serving; the log is checked
    assert status == 200


async def test_a_tls_client_to_a_plain_server_fails_its_handshake(
    server: ServerProcess,
) -> None:
    with pytest.raises(ssl.SSLError, match=r"(?i)handshake.failure"):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", server.port, ssl=ssl.create_default_context()),
            TIMEOUT,
        )
    status, _ = await server.call("GET", "/healthz")
    assert status == 200


async def test_tls_only_refuses_plain_connections(
    tmp_path: Path, databases: Databases, certs: Certs
) -> None:
    proc = WatchedServer(
        tmp_path / "only", databases, tls_cert=certs.cert, tls_key=certs.key, tls_only="true"
    )
    try:
        plain = await TcpClient.connect(proc.port)
        await plain.send({"msgType": 1, "token": "x", "fromClientType": 2})
        refusal = await plain.recv()
        assert refusal["code"] == 403 and "tcps://" in refusal["reason"], refusal
        assert await plain.closed()
        async with aiohttp.ClientSession() as http:
            async with http.get(proc.url + "/?x=1", allow_redirects=False) as r:
                assert r.status == 308
                assert r.headers["Location"] == f"https://127.0.0.1:{proc.port}/?x=1"
            async with http.post(proc.url + "/api/v1/users", json={"username": "n"}) as r:
                assert r.status == 403
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"ws://127.0.0.1:{proc.port}/ws")
        client = await tls_tcp(proc.port, certs.client_context())  # TLS works
        user_id = await add_user_https(proc.port, certs)
        await client.login(proc.token(user_id))
        await client.close()
    finally:
        proc.stop()
    assert proc.count("SELECT count(*) FROM users") == 1  # the plain POST changed nothing


async def add_user_https(port: int, certs: Certs) -> int:
    connector = aiohttp.TCPConnector(ssl=certs.client_context())
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(
            f"https://127.0.0.1:{port}/api/v1/users", json={"username": "t"}, headers=headers
        ) as r,
    ):
        assert r.status == 201, await r.text()
        return int((await r.json())["userId"])


def serve_fails(tmp_path: Path, *args: str) -> str:
    """``imhub serve`` with these flags must stop before listening; its message."""
    env = {"IMHUB_DATA_DIR": str(tmp_path / "data"), "IMHUB_PORT": "0"}
    result = CliRunner().invoke(main, ["serve", *args], env=env)
    assert result.exit_code == 2, result.output
    return result.output


def test_the_certificate_files_are_checked_at_start(tmp_path: Path, certs: Certs) -> None:
    other = Certs(tmp_path)  # another certificate: its key does not match ours
    cert, key = str(certs.cert), str(certs.key)
    assert "go together" in serve_fails(tmp_path, "--tls-cert", cert)
    assert "needs tls_cert" in serve_fails(tmp_path, "--tls-only")
    missing = serve_fails(tmp_path, "--tls-cert", cert, "--tls-key", str(tmp_path / "nope.pem"))
    assert "tls_key" in missing and "cannot read" in missing
    mismatched = serve_fails(tmp_path, "--tls-cert", cert, "--tls-key", str(other.key))
    assert "does not belong to the certificate" in mismatched
    assert "not a PEM" in serve_fails(tmp_path, "--tls-cert", key, "--tls-key", key)
    (tmp_path / "imhub.toml").write_text(f'tls_cert = "{cert}"\n')
    assert "go together" in serve_fails(tmp_path, "--config", str(tmp_path / "imhub.toml"))


async def test_tls_connections_leave_no_count_behind(
    make_server: Callable[..., ServerProcess], certs: Certs
) -> None:
    """A connection is counted against the limits from its accept, and no longer once it is
    closed: one whose handshake failed, and one that was served over TLS (a closed TLS
    transport no longer tells its peer's address). Else closed ones would refuse everyone."""
    srv = make_server(
        max_connections=2, tls_cert=certs.cert, tls_key=certs.key, login_timeout=LOGIN_TIMEOUT
    )
    user_id = await srv.add_user("after")
    for first in (b"\x16" + os.urandom(600), b"\x16\x03\x01\x00\x05hello") * 2:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(first)
        await closed_by_server(reader)
        writer.close()

    async def served() -> TcpClient | None:  # once the server has seen the last close
        try:
            client = await tls_tcp(srv.port, certs.client_context())
            await client.login(srv.token(user_id))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return None
        return client

    for _ in range(2):  # each closed before the next: 2 would take every place
        async with asyncio.timeout(TIMEOUT):
            client = await served()
            while client is None:
                client = await served()
        await client.close()
