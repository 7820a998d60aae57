"""Test clients over real sockets: a raw TCP frame client and a WebSocket client with one API,
and a handle on a server process started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from imhub.service.auth import TokenAuthority
from tests.databases import Checker, Database, Databases

TIMEOUT = float(os.environ.get("IMHUB_TEST_TIMEOUT", "5"))
SECRET = "test-secret-" + "x" * 32
API_KEY = "test-api-key"


class Client:
    """What both transports offer a test: send a JSON object, receive the next one.

    ``expect`` and ``silent`` pass over read receipts (msgType 12) unless a test asks for them,
    so tests about other things need not list every receipt their actions cause."""

    skip_types = frozenset({12})

    async def send(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raise NotImplementedError

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the connection (messages before that are skipped)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def expect(self, msg_type: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message, which must be of ``msg_type``."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg["msgType"] == msg_type or msg["msgType"] not in self.skip_types:
                    break
        assert msg["msgType"] == msg_type, f"expected msgType {msg_type}, got {msg}"
        return msg

    async def login(self, token: str, client_type: int = 2) -> dict[str, Any]:
        await self.send({"msgType": 1, "token": token, "fromClientType": client_type})
        answer = await self.expect(1)
        assert answer["code"] == 0, answer
        return answer

    async def chat(self, to: int, mid: str, body: str, body_type: int = 0) -> dict[str, Any]:
        """Send a one-to-one message and return its chat_answer."""
        await self.send(
            {"msgType": 3, "toUserId": to, "msgIdClient": mid, "bodyType": body_type, "body": body}
        )
        answer = await self.expect(4)
        assert answer["msgIdClient"] == mid
        return answer

    async def chat_team(self, team: int, mid: str, body: str) -> dict[str, Any]:
        """Send a group message and return its chat_answer."""
        await self.send({"msgType": 3, "teamId": team, "msgIdClient": mid, "body": body})
        answer = await self.expect(4)
        assert answer["msgIdClient"] == mid, answer
        return answer

    async def next_of(
        self, accept: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT * 3
    ) -> dict[str, Any]:
        """The first message ``accept`` takes; the others before it are passed over."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if accept(msg):
                    return msg

    async def answer(self, msg_type: int) -> dict[str, Any]:
        """The answer (it has a ``code``) to this connection's request of ``msg_type``; the
        events of that type before it (group changes it caused) are passed over."""
        while "code" not in (msg := await self.expect(msg_type)):
            continue
        return msg

    async def silent(self, timeout: float = 0.3) -> bool:
        """True when nothing arrives within ``timeout`` (used to assert 'not delivered')."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.recv(timeout)
                    if msg["msgType"] not in self.skip_types:
                        break
        except TimeoutError:
            return True
        raise AssertionError(f"expected nothing, got {msg}")


class TcpClient(Client):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> TcpClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        await self.send_raw(struct.pack(">I", len(body)) + body)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            (n,) = struct.unpack(">I", await self.reader.readexactly(4))
            return json.loads(await self.reader.readexactly(n))  # type: ignore[no-any-return]

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if not await self.reader.read(65536):
                        return True
                except ConnectionError:
                    return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class WsClient(Client):
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, port: int) -> WsClient:
        return cls(await websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None))

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed:
                return True

    async def close(self) -> None:
        await self.ws.close()


TRANSPORTS: dict[str, Callable[[int], Any]] = {"tcp": TcpClient.connect, "ws": WsClient.connect}


class ServerProcess:
    """An ``imhub serve`` process on a free port with its own data folder."""

    stderr: Any = None  # where the server's log goes (a subclass may keep it in a file)

    def __init__(self, data_dir: Path, databases: Databases | Database, **options: Any) -> None:
        """A server on a fresh database from ``databases`` (or on ``database``, shared with
        other servers)."""
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.database = databases.fresh(data_dir) if isinstance(databases, Databases) else databases
        self.backend = self.database.backend
        self.env = {
            **os.environ,
            "IMHUB_DATA_DIR": str(data_dir),
            "IMHUB_DATABASE_URL": self.database.url,
            "IMHUB_PORT": "0",
            "IMHUB_TOKEN_SECRET": SECRET,
            "IMHUB_API_KEY": API_KEY,
            "IMHUB_LOG_LEVEL": "WARNING",
        }
        for key, value in options.items():
            self.env["IMHUB_" + key.upper()] = str(value)
        self.auth = TokenAuthority(self.env["IMHUB_TOKEN_SECRET"])
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imhub", "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the process prints this once it listens
        if not line.startswith("imhub listening on"):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def crash(self) -> None:
        """SIGKILL the server: no goodbye to anyone."""
        self.proc.kill()
        self.proc.wait()

    def crash_and_restart(self, same_port: bool = False) -> None:
        """SIGKILL the server, then start it again on the same database (on a new port, or
        on the same one)."""
        self.crash()
        self.restart(same_port)

    def restart(self, same_port: bool = False) -> None:
        if same_port:
            self.env["IMHUB_PORT"] = str(self.port)
        self._spawn()

    def add_user_blocking(self, name: str) -> int:
        """``add_user`` for tests that drive blocking tools (pexpect)."""
        import urllib.request

        request = urllib.request.Request(
            self.url + "/api/v1/users",
            data=json.dumps({"username": name}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return int(json.loads(resp.read())["userId"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def db(self) -> contextlib.AbstractContextManager[Checker]:
        """A connection on the server's database (committed at the end of the block), to
        check what was stored: ``db.execute(sql, (args,))`` with ``?`` placeholders."""
        return self.database.connect()

    def sql(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders, on any backend; its rows."""
        return self.database.sql(sql, *args)

    def count(self, sql: str, *args: Any) -> int:
        return self.database.count(sql, *args)

    def token(self, user_id: int, ttl: int = 3600) -> str:
        return self.auth.mint(user_id, ttl)

    async def post(
        self, path: str, body: Any, api_key: str | None = API_KEY
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url + path, json=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()

    async def call(
        self, method: str, path: str, body: Any = None, api_key: str | None = API_KEY
    ) -> tuple[int, Any]:
        """Any HTTP API request: the status and the JSON answer (None when it has no body)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body, headers=headers) as resp,
        ):
            data = await resp.read()
            return resp.status, json.loads(data) if data else None

    async def add_user(self, name: str = "user") -> int:
        status, body = await self.post("/api/v1/users", {"username": name[:20]})
        assert status == 201, body
        return int(body["userId"])

    async def connect(self, transport: str = "tcp") -> Client:
        return await TRANSPORTS[transport](self.port)  # type: ignore[no-any-return]

    async def slow_reader(self, user_id: int) -> TcpClient:
        """``user_id`` logged in on a TCP connection with a small receive buffer that the test
        then never reads: the server's writes to it pile up."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.port))
        slow = TcpClient(*await asyncio.open_connection(sock=sock))
        await slow.login(self.token(user_id))
        return slow

    async def online(self, name: str = "user", transport: str = "tcp") -> tuple[int, Client]:
        """A new user, logged in on a new connection."""
        user_id = await self.add_user(name)
        client = await self.connect(transport)
        await client.login(self.token(user_id))
        return user_id, client
