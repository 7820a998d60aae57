"""A database that goes away mid-stream and comes back (PostgreSQL stopped with an immediate
shutdown, MariaDB killed): senders get retryable errors, never a false chat_answer; /readyz
says the database is down, then up; the server reconnects by itself; and a client that kept
sending through the outage ends with every message stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from imhub.client import Sent
from imhub.storage.outage import UNAVAILABLE
from imhub.storage.writer import BATCH_DEADLINE
from tests.client.conftest import App
from tests.databases import Databases, MariaDatabases, PostgresDatabases
from tests.helpers import TIMEOUT, ServerProcess
from tests.ops.watch import LoggedServer
from tests.services import MariaDB, Postgres


@pytest.fixture(params=["postgresql", "mariadb"])
def outage_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    """A database server of this test's own, which it stops and starts."""
    factory: Databases
    if request.param == "postgresql":
        factory = PostgresDatabases(Postgres())
        yield factory
        factory.server.remove()
    else:
        factory = MariaDatabases(
            tmp_path_factory.mktemp("mdb"), MariaDB(tmp_path_factory.mktemp("mdb-server"))
        )
        yield factory
        if factory.server.running:
            factory.server.stop()


async def ready(server: ServerProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as resp:
        return resp.status


async def until_ready(server: ServerProcess, status: int) -> None:
    """Until /readyz answers ``status`` (it asks the database each time)."""
    async with asyncio.timeout(TIMEOUT * 6):
        while True:  # a probe to poll: nothing announces the database's state
            if await ready(server) == status:
                return
            await asyncio.sleep(0.1)


async def test_a_client_sending_through_a_database_outage_loses_nothing(
    tmp_path: Path, outage_databases: Databases, make_app: Callable[..., App]
) -> None:
    db_server = outage_databases.server  # type: ignore[attr-defined]
    server = LoggedServer(tmp_path / "server", outage_databases)
    try:
        alice, bob = await server.add_user("alice"), await server.add_user("bob")
        a = make_app(f"tcp://127.0.0.1:{server.port}", server.token(alice), request_timeout=60.0)
        b = make_app(f"ws://127.0.0.1:{server.port}/ws", server.token(bob))
        await a.client.start()
        await b.client.start()
        total = 120
        sends: list[asyncio.Task[Sent]] = []
        carol, raw = await server.online("carol")  # a sender that sees its answers as they are
        raw_answers: list[dict[str, object]] = []
        for n in range(total):
            sends.append(asyncio.create_task(a.client.send_chat(to_user=bob, body=f"m{n}")))
            if n == 40:
                db_server.stop(immediate=True)
                await until_ready(server, 503)
                for i in range(5):  # the database is down: each gets a retryable error
                    await raw.send({"msgType": 3, "toUserId": bob, "msgIdClient": f"raw{i}",
                                    "body": "during"})  # fmt: skip
                    answer = await raw.next_of(lambda m: m["msgType"] in (4, 8), TIMEOUT * 2)
                    raw_answers.append(answer)
                # A login and an HTTP read meet the outage too: a 500 that says so.
                fresh = await server.connect()
                await fresh.send({"msgType": 1, "token": server.token(bob), "fromClientType": 2})
                refused = await fresh.recv(TIMEOUT * 2)
                assert (refused["code"], refused["reason"]) == (500, UNAVAILABLE), refused
                status, body = await server.call("GET", f"/api/v1/users/{alice}/conversations")
                assert (status, body["reason"]) == (500, UNAVAILABLE), body
                await fresh.close()
            if n == 80:
                db_server.start()
                await until_ready(server, 200)
            await asyncio.sleep(0.01)
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 90)
        assert [r for r in results if not isinstance(r, Sent)] == []
        assert [x["msgType"] for x in raw_answers] == [8] * 5, raw_answers
        assert {x["code"] for x in raw_answers} <= {500, 503}, raw_answers
        assert [x["msgIdClient"] for x in raw_answers] == [f"raw{i}" for i in range(5)]
        assert server.count("select count(*) from person_msg where from_user_id = ?", carol) == 0
        # Every message stored exactly once, numbered 1..total with no gap.
        rows = server.sql(
            "select body, seq from person_msg where from_user_id = ? order by seq", alice
        )
        assert sorted(body for body, _ in rows) == sorted(f"m{n}" for n in range(total))
        assert [seq for _, seq in rows] == list(range(1, total + 1))
        await b.until(lambda: len(b.messages) >= total, 60)
        assert sorted(m.body for m in b.messages) == sorted(f"m{n}" for n in range(total))
        assert len(b.messages) == total
        # The outage is a few lines saying so, not a traceback per request.
        log = server.all_lines()
        assert any("database unavailable" in line for line in log), log
        assert not any("Traceback" in line for line in log), log
    finally:
        server.stop()


def _family(pid: int) -> list[int]:
    """``pid`` and its children (a PostgreSQL server: the postmaster and its backends)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


async def test_a_database_that_hangs_gets_sends_answered_not_held(tmp_path: Path) -> None:
    """A database server that stops answering without closing its sockets (frozen): a send
    is answered with a retryable 500 within the writer's deadline, not held until it wakes;
    the same send once it is back is stored once."""
    factory = PostgresDatabases(Postgres())
    server = ServerProcess(tmp_path / "server", factory)
    frozen: list[int] = []
    try:
        alice, raw = await server.online("alice")
        bob = await server.add_user("bob")
        assert (await raw.chat(bob, "before", "before"))["code"] == 0
        frozen = _family(factory.server.pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        await raw.send({"msgType": 3, "toUserId": bob, "msgIdClient": "m1", "body": "during"})
        answer = await raw.recv(BATCH_DEADLINE + TIMEOUT)
        assert (answer["msgType"], answer["code"]) == (8, 500), answer
        assert (answer["msgIdClient"], answer["reason"]) == ("m1", UNAVAILABLE)
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen = []
        async with asyncio.timeout(TIMEOUT * 6):
            while True:  # resent, as a client does after a 500, until the pool reconnects
                await raw.send({"msgType": 3, "toUserId": bob, "msgIdClient": "m1",
                                "body": "during"})  # fmt: skip
                answer = await raw.recv(BATCH_DEADLINE + TIMEOUT)
                if answer["msgType"] == 4:
                    break
                assert answer["code"] == 500, answer
                await asyncio.sleep(0.5)
        assert server.count("select count(*) from person_msg where msg_id_client = 'm1'") == 1
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        server.stop()
        factory.server.remove()


async def test_a_database_restart_the_server_slept_through_costs_no_request(
    tmp_path: Path, outage_databases: Databases
) -> None:
    """The database restarts while the server idles (its writer's connection, kept between
    batches, dies with it): the first chat and the first login after it simply work."""
    db_server = outage_databases.server  # type: ignore[attr-defined]
    server = LoggedServer(tmp_path / "server", outage_databases)
    try:
        alice, raw = await server.online("alice")
        bob = await server.add_user("bob")
        assert (await raw.chat(bob, "before", "before"))["code"] == 0  # the writer connects
        await raw.close()
        db_server.stop()
        db_server.start()
        await until_ready(server, 200)
        again = await server.connect()
        await again.login(server.token(alice))  # a login goes through the writer too
        await again.send({"msgType": 3, "toUserId": bob, "msgIdClient": "after", "body": "x"})
        answer = await again.next_of(lambda m: m["msgType"] in (4, 8))
        assert (answer["msgType"], answer["code"]) == (4, 0), answer
        later = await server.connect()
        await later.login(server.token(bob))
        assert server.count("select count(*) from person_msg where msg_id_client = 'after'") == 1
        log = server.all_lines()
        assert not any("database unavailable" in line or "Traceback" in line for line in log)
    finally:
        server.stop()
