"""Several servers writing to one PostgreSQL or MariaDB database at once: sequence numbers
stay gap-free per conversation, every acknowledged message is stored once where its answer
said, a retry sent to two servers at once is stored once, a new pair gets one chat row, and a
member removed through one server cannot post through another. (Live delivery between servers
is the cluster's: these tests check storage and the answers.) SQLite takes one server."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.databases import Databases, bind
from tests.helpers import TIMEOUT, Client, ServerProcess
from tests.ops.watch import LoggedServer

SERVERS = 3


@pytest.fixture
def shared(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite takes one server (see test_a_second_server_on_sqlite_refuses)")


async def answers_to(client: Client, mids: list[str]) -> dict[str, dict[str, Any]]:
    """Read until every id in ``mids`` has its answer (chat_answer or error), skipping the
    rest (deliveries, receipts)."""
    want, got = set(mids), {}
    async with asyncio.timeout(TIMEOUT * 6):
        while want - got.keys():
            msg = await client.recv(TIMEOUT * 6)
            if msg["msgType"] in (4, 8) and msg.get("msgIdClient") in want:
                got[msg["msgIdClient"]] = msg
    return got


async def test_writers_on_one_database_keep_every_conversation_in_order(
    shared: None, make_server: Callable[..., ServerProcess]
) -> None:
    first = make_server()
    servers = [first] + [make_server(database=first.database) for _ in range(SERVERS - 1)]
    users = [await first.add_user(f"u{i}") for i in range(6)]
    # Every user on every server: a send goes through any of them.
    conns: dict[tuple[int, int], Client] = {}
    for u in users:
        for s, srv in enumerate(servers):
            conns[(u, s)] = c = await srv.connect()
            await c.login(srv.token(u))
    owner = conns[(users[0], 0)]
    await owner.send({"msgType": 16, "teamName": "all", "memberIds": users[1:]})
    created = await owner.answer(16)
    team = created["teamId"]
    rng = random.Random(7)
    plan: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for u in users:
        for i in range(40):
            msg: dict[str, Any] = {"msgType": 3, "msgIdClient": f"{u}-{i}", "body": f"{u}:{i}"}
            if i % 3 == 0:
                msg["teamId"] = team
            else:
                msg["toUserId"] = rng.choice([v for v in users if v != u])
            # Each message through one server; every fifth also through a second one at the
            # same moment (a retry racing the first copy).
            s = rng.randrange(SERVERS)
            plan[(u, s)].append(msg)
            if i % 5 == 0:
                plan[(u, (s + 1) % SERVERS)].append(msg)

    async def send_all(key: tuple[int, int]) -> dict[str, dict[str, Any]]:
        for msg in plan[key]:
            await conns[key].send(msg)
        return await answers_to(conns[key], [m["msgIdClient"] for m in plan[key]])

    keys = list(plan)
    results = await asyncio.gather(*(send_all(k) for k in keys))
    acked: dict[tuple[int, str], set[tuple[int, int, int]]] = defaultdict(set)
    for (u, _), answers in zip(keys, results, strict=True):
        for mid, ans in answers.items():
            assert ans["msgType"] == 4 and ans["code"] == 0, ans
            conv = ans.get("chatId") or -ans["teamId"]
            acked[(u, mid)].add((conv, ans["seq"], ans["msgIdServer"]))
    # Both copies of a raced retry got the same answer; every message was answered.
    assert all(len(v) == 1 for v in acked.values()), [v for v in acked.values() if len(v) > 1]
    assert len(acked) == len(users) * 40
    db = first.database
    for table, key, head in (
        ("person_msg", "chat_id", "select chat_id, last_seq from chat where event_type = 0"),
        ("team_msg", "team_id", "select team_id, last_seq from team"),
    ):
        for conv, last in db.sql(head):
            seqs = [s for (s,) in db.sql(f"select seq from {table} where {key}=? order by seq",
                                         conv)]  # fmt: skip
            assert seqs == list(range(1, last + 1)), (table, conv, last, seqs)
    for (u, mid), ((conv, seq, msg_id),) in acked.items():
        table, key = ("team_msg", "team_id") if conv < 0 else ("person_msg", "chat_id")
        ident = "team_msg_id" if conv < 0 else "person_msg_id"
        rows = db.sql(
            f"select {key}, seq, {ident} from {table} where from_user_id=? and msg_id_client=?",
            u,
            mid,
        )
        assert rows == [(abs(conv), seq, msg_id)], (u, mid, rows)
    assert db.count("select count(*) from person_msg") + db.count(
        "select count(*) from team_msg where msg_type = 3"
    ) == len(acked)
    pairs = db.sql("select from_user_id, to_user_id from chat where event_type = 0")
    assert len(pairs) == len(set(pairs))


async def test_a_new_pair_written_from_two_servers_at_once_gets_one_chat(
    shared: None, make_server: Callable[..., ServerProcess]
) -> None:
    first = make_server()
    second = make_server(database=first.database)
    for round_ in range(10):
        a_id, b_id = await first.add_user(f"a{round_}"), await first.add_user(f"b{round_}")
        a = await first.connect()
        await a.login(first.token(a_id))
        b = await second.connect()
        await b.login(second.token(b_id))
        await asyncio.gather(
            a.send({"msgType": 3, "toUserId": b_id, "msgIdClient": "hi", "body": "from a"}),
            b.send({"msgType": 3, "toUserId": a_id, "msgIdClient": "hi", "body": "from b"}),
        )
        x, y = await answers_to(a, ["hi"]), await answers_to(b, ["hi"])
        assert x["hi"]["chatId"] == y["hi"]["chatId"], (x, y)
        assert sorted([x["hi"]["seq"], y["hi"]["seq"]]) == [1, 2]
        await a.close()
        await b.close()
    assert first.count("select count(*) from chat where event_type = 0") == 10


async def test_membership_changed_through_one_server_holds_at_another(
    shared: None, make_server: Callable[..., ServerProcess]
) -> None:
    first = make_server()
    second = make_server(database=first.database)
    owner, o = await first.online("owner")
    x_id, y_id, z_id = [await first.add_user(n) for n in ("x", "y", "z")]
    x = await second.connect()
    await x.login(second.token(x_id))
    y = await second.connect()
    await y.login(second.token(y_id))
    await o.send({"msgType": 16, "teamName": "g", "memberIds": [x_id, z_id]})
    created = await o.answer(16)
    team = created["teamId"]
    # The second server's writer caches the group's members while x posts.
    assert (await x.chat_team(team, "before", "in"))["code"] == 0
    await o.send({"msgType": 18, "teamId": team, "memberIds": [x_id]})  # removed at first
    removed = await o.answer(18)
    assert removed["code"] == 0, removed
    await x.send({"msgType": 3, "teamId": team, "msgIdClient": "after", "body": "out"})
    refused = (await answers_to(x, ["after"]))["after"]
    assert refused["msgType"] == 8 and refused["code"] == 403, refused
    await o.send({"msgType": 17, "teamId": team, "memberIds": [y_id]})  # added at first
    await o.answer(17)
    assert (await y.chat_team(team, "new", "in"))["code"] == 0  # accepted at second
    assert first.count("select count(*) from team_msg where msg_id_client = 'after'") == 0


async def test_read_positions_never_move_back_across_servers(
    shared: None, make_server: Callable[..., ServerProcess]
) -> None:
    first = make_server()
    second = make_server(database=first.database)
    alice, a = await first.online("alice")
    bob = await first.add_user("bob")
    chat = 0
    for i in range(30):
        chat = (await a.chat(bob, f"m{i}", "x"))["chatId"]
    b1, b2 = await first.connect(), await second.connect()
    await b1.login(first.token(bob))
    await b2.login(second.token(bob))
    ups, downs = list(range(1, 31, 2)), list(range(30, 0, -2))  # racing in opposite orders
    await asyncio.gather(
        *(b1.send({"msgType": 12, "chatId": chat, "seq": n, "msgIdClient": f"u{n}"}) for n in ups),
        *(
            b2.send({"msgType": 12, "chatId": chat, "seq": n, "msgIdClient": f"d{n}"})
            for n in downs
        ),
    )
    await read_answers(b1, {f"u{n}" for n in ups})
    await read_answers(b2, {f"d{n}" for n in downs})
    assert first.count("select to_read_seq from chat where chat_id = ?", chat) == 30


async def read_answers(client: Client, mids: set[str]) -> None:
    async with asyncio.timeout(TIMEOUT * 2):
        while mids:
            msg = await client.recv()
            if msg["msgType"] == 12:
                mids.discard(msg.get("msgIdClient", ""))


def test_a_second_server_on_sqlite_refuses_to_start(
    backend: str, make_server: Callable[..., ServerProcess]
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    first = make_server()
    env = {**first.env, "IMHUB_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "imhub", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=os.getcwd(),
    )
    assert done.returncode != 0
    assert "in use by another imhub server" in done.stderr, done.stderr
    assert first.proc.poll() is None  # the first one goes on


async def test_a_batch_that_meets_another_writers_lock_is_tried_again(
    shared: None, backend: str, databases: Databases, tmp_path: Path
) -> None:
    """Another transaction holds a conversation's row past the lock timeout: the writer's
    batch fails with a lock timeout, is tried again as a whole, and succeeds once the lock is
    gone; the sender gets its chat_answer, not an error."""
    database = databases.fresh(tmp_path)
    if backend == "postgresql":
        name = database.url.rsplit("/", 1)[1]
        database.sql(f"ALTER DATABASE {name} SET lock_timeout = '300ms'")
    else:
        database.sql("SET GLOBAL innodb_lock_wait_timeout = 1")
    srv = LoggedServer(tmp_path / "server", database, log_level="INFO", log_format="json")
    try:
        alice, a = await srv.online("alice")
        bob = await srv.add_user("bob")
        chat = (await a.chat(bob, "first", "x"))["chatId"]
        with database.engine.connect() as other:
            other.execute(*bind("select last_seq from chat where chat_id = ? for update", (chat,)))
            await a.send({"msgType": 3, "toUserId": bob, "msgIdClient": "second", "body": "y"})
            await srv.wait_for(lambda r: "met another writer" in r.get("msg", ""), TIMEOUT * 3)
            other.rollback()  # the lock goes
        answer = (await answers_to(a, ["second"]))["second"]
        assert answer["msgType"] == 4 and answer["seq"] == 2, answer
        assert srv.count("select last_seq from chat where chat_id = ?", chat) == 2
    finally:
        srv.stop()
        if backend == "mariadb":
            database.sql("SET GLOBAL innodb_lock_wait_timeout = 50")


async def test_reads_moving_while_writers_store_never_deadlock(
    shared: None, backend: str, databases: Databases, tmp_path: Path
) -> None:
    """Three servers store to one pair and one group while the read positions of both move
    through every server at once (explicit reads, and members showing the conversations, whose
    positions move with each message). Before, a batch that moved a read of the pair and then
    stored to the group locked the pair's row before the group's, another the other way round,
    and they deadlocked. Every batch now takes its row locks in one order, so no writer ever
    waits for another in a circle: no deadlock (which the writer logs as "met another writer"
    before trying the batch again), no late lock, and the data checks of the first test."""
    database = databases.fresh(tmp_path)
    servers = [
        LoggedServer(tmp_path / f"s{i}", database, log_level="INFO", log_format="json")
        for i in range(SERVERS)
    ]
    try:
        await _store_and_read_everywhere(servers)
        lines = [line for srv in servers for line in srv.all_lines()]
        met = [line for line in lines if "met another writer" in line or "locked after" in line]
        assert not met, met
        if backend == "postgresql":
            assert database.count("select deadlocks from pg_stat_database"
                                  " where datname = current_database()") == 0  # fmt: skip
    finally:
        for srv in servers:
            srv.stop()


async def _store_and_read_everywhere(servers: list[LoggedServer]) -> None:
    first = servers[0]
    users = [await first.add_user(f"u{i}") for i in range(4)]
    a, b = users[0], users[1]
    senders: dict[tuple[int, int], Client] = {}
    readers: dict[tuple[int, int], Client] = {}
    for u in users:
        for s, srv in enumerate(servers):
            for conns in (senders, readers):
                conns[(u, s)] = c = await srv.connect()
                await c.login(srv.token(u))
    owner = senders[(a, 0)]
    await owner.send({"msgType": 16, "teamName": "all", "memberIds": users[1:]})
    created = await owner.answer(16)
    team = created["teamId"]
    chat = (await owner.chat(b, "first", "hi"))["chatId"]
    for (u, _), c in readers.items():  # shown here: each message stored moves u's position
        shown = [{"teamId": team}] + ([{"chatId": chat}] if u in (a, b) else [])
        for where in shown:
            await c.send({"msgType": 5, **where})
            await c.next_of(lambda m: m["msgType"] == 5)
    rng = random.Random(11)
    per = 20
    keys = list(senders)
    sending = True

    async def send_all(u: int, s: int) -> dict[str, dict[str, Any]]:
        """One message at a time, like a person typing: batches mix stores and reads."""
        got: dict[str, dict[str, Any]] = {}
        for i in range(per):
            mid = f"{u}-{s}-{i}"
            msg: dict[str, Any] = {"msgType": 3, "msgIdClient": mid, "body": mid}
            if u in (a, b) and i % 2:
                msg["toUserId"] = b if u == a else a
            else:
                msg["teamId"] = team
            await senders[(u, s)].send(msg)
            got.update(await answers_to(senders[(u, s)], [mid]))
        return got

    async def send_everywhere() -> list[dict[str, dict[str, Any]]]:
        nonlocal sending
        try:
            return await asyncio.gather(*(send_all(u, s) for u, s in keys))
        finally:
            sending = False

    async def read_all(u: int, s: int) -> list[dict[str, Any]]:
        """Reads one after another, through every server, for as long as messages go."""
        answers: list[dict[str, Any]] = []
        while sending or not answers:
            mid = f"r{u}-{s}-{len(answers)}"
            where = {"chatId": chat} if u in (a, b) else {"teamId": team}
            await readers[(u, s)].send(
                {"msgType": 12, **where, "seq": rng.randint(1, 3 * per), "msgIdClient": mid}
            )
            msg = await readers[(u, s)].next_of(
                lambda m, mid=mid: m.get("msgIdClient") == mid, TIMEOUT * 6
            )
            answers.append(msg)
        return answers

    sent, read = await asyncio.gather(
        send_everywhere(), asyncio.gather(*(read_all(u, s) for u, s in keys))
    )
    db = first.database
    acked = 1  # "first"
    for (u, _), answers in zip(keys, sent, strict=True):
        for mid, ans in answers.items():
            assert ans["msgType"] == 4 and ans["code"] == 0, ans
            table, key, ident, conv = (
                ("team_msg", "team_id", "team_msg_id", team)
                if "teamId" in ans
                else ("person_msg", "chat_id", "person_msg_id", chat)
            )
            rows = db.sql(f"select {key}, seq, {ident} from {table}"
                          " where from_user_id=? and msg_id_client=?", u, mid)  # fmt: skip
            assert rows == [(conv, ans["seq"], ans["msgIdServer"])], (u, mid, rows, ans)
            acked += 1
    assert acked == 1 + len(keys) * per
    for table, key, conv, head in (
        ("person_msg", "chat_id", chat, "select last_seq from chat where chat_id=?"),
        ("team_msg", "team_id", team, "select last_seq from team where team_id=?"),
    ):
        last = db.count(head, conv)
        seqs = [s for (s,) in db.sql(f"select seq from {table} where {key}=? order by seq", conv)]
        assert seqs == list(range(1, last + 1)), (table, seqs)
    assert (
        db.count("select count(*) from person_msg")
        + db.count("select count(*) from team_msg where msg_type = 3")
        == acked
    )
    # Positions never moved back: each ends at or past the highest one a read answered.
    highest: dict[tuple[int, str], int] = defaultdict(int)
    for (u, _), answers in zip(keys, read, strict=True):
        for ans in answers:
            assert ans["msgType"] == 12 and ans["code"] == 0, ans
            where = "chat" if ans.get("chatId") else "team"
            highest[(u, where)] = max(highest[(u, where)], ans["seq"])
    assert len(highest) == 4  # a and b read the pair, the others the group
    for (u, where), seq in highest.items():
        if where == "team":
            pos = db.count("select to_read_seq from chat where team_id=? and to_user_id=?",
                           team, u)  # fmt: skip
        else:
            col = "from_read_seq" if u == min(a, b) else "to_read_seq"
            pos = db.count(f"select {col} from chat where chat_id=?", chat)
        assert pos >= seq, (u, where, pos, seq)
