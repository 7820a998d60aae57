"""Every query a server runs to send, log in, sync and page history finds its rows through an
index: its cost must not grow with the stored history (issue 14).

The statements are not listed by hand: a server runs in this process on a database that
already holds conversations (``bench.history_gen``), every SQL statement its SQLite
connections execute is recorded (``set_trace_callback``: the statement as run, values bound),
clients drive it over real sockets through the paths, and each recorded statement is then
explained (``EXPLAIN QUERY PLAN``), without statistics as a server has them and after
ANALYZE. A full pass over a table (``SCAN person_msg``, ``SCAN chat USING INDEX …``) fails."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.history_gen import GROUP_MEMBERS, LOGIN_PEERS, LOGIN_USER, generate
from imhub.app import App
from imhub.config import Config
from tests.helpers import API_KEY, SECRET, TcpClient

# The tables whose size grows with use; a pass over any of them is a bug on these paths.
GROWING = ("person_msg", "team_msg", "chat", "team", "users", "notice", "notice_target",
           "team_member_msg")  # fmt: skip
NOT_QUERIES = re.compile(r"^\s*(PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)
SCAN = re.compile(r"\bSCAN (\w+)")


async def _drive(port: int, auth: Any) -> list[TcpClient]:
    """A login with a backlog, sends (a new pair, an existing one, a group), reads, history,
    sync to its end, conversations, unread counts, receipts and a recall."""
    peer = LOGIN_USER + 1
    sender = await TcpClient.connect(port)
    await sender.login(auth.mint(peer))
    for i in range(3):
        await sender.chat(LOGIN_USER, f"qp-{i}", "hello")
    first = await sender.chat(2, "qp-new-pair", "a chat that did not exist")
    again = await sender.chat(2, "qp-new-pair", "a retry: the earlier copy is looked up")
    assert again["msgIdServer"] == first["msgIdServer"]
    me = await TcpClient.connect(port)
    await me.send({"msgType": 1, "token": auth.mint(LOGIN_USER), "fromClientType": 2})
    login = await me.answer(1)
    assert len(login["unread"]) == 1, login  # the three above, in one conversation
    backlog = [await me.expect(7) for _ in range(3)]
    chat_id = backlog[0]["chatId"]
    answer = await sender.chat(LOGIN_USER, "qp-more", "one more")
    await me.expect(7)
    await me.send({"msgType": 14, "chatId": chat_id, "limit": 20})
    assert len((await me.answer(14))["messages"]) == 20
    await me.send({"msgType": 14, "chatId": chat_id, "beforeSeq": 10, "limit": 5})
    assert [m["seq"] for m in (await me.answer(14))["messages"]] == [5, 6, 7, 8, 9]
    await me.send({"msgType": 11, "convs": [{"chatId": chat_id, "seq": 1}], "limit": 10})
    page = await me.answer(11)
    assert page["more"] and len(page["messages"]) == 10
    await me.send({"msgType": 11, "convs": [{"chatId": chat_id, "seq": answer["seq"] - 2}]})
    last = await me.answer(11)
    assert not last["more"] and len(last["convs"]) == LOGIN_PEERS, last
    await me.send({"msgType": 15})
    assert len((await me.answer(15))["convs"]) == LOGIN_PEERS
    await me.send({"msgType": 9})
    assert (await me.answer(9))["unread"]
    await me.send({"msgType": 12, "chatId": chat_id, "seq": answer["seq"] - 1})
    await me.answer(12)
    await me.send({"msgType": 5, "chatId": chat_id})
    await me.answer(5)
    await me.send({"msgType": 13, "chatId": chat_id, "seq": answer["seq"]})
    assert (await me.answer(13))["readNum"] == 1
    await sender.send({"msgType": 10, "chatId": chat_id, "seq": answer["seq"]})
    assert (await sender.answer(10))["code"] == 0
    member = await TcpClient.connect(port)
    await member.login(auth.mint(GROUP_MEMBERS))
    stored = await member.chat_team(1, "qp-group", "to the group of 1,000")
    assert (await member.chat_team(1, "qp-group", "again"))["seq"] == stored["seq"]
    await member.send({"msgType": 11, "convs": [{"teamId": 1, "seq": stored["seq"] - 5}],
                       "limit": 3})  # fmt: skip
    assert len((await member.answer(11))["messages"]) == 3
    await member.send({"msgType": 14, "teamId": 1, "limit": 20})
    assert len((await member.answer(14))["messages"]) == 20
    await member.send({"msgType": 16, "teamName": "qp", "memberIds": [LOGIN_USER, peer]})
    assert (await member.answer(16))["code"] == 0
    return [sender, me, member]


def _plans(db: Path, statements: list[str]) -> dict[str, list[str]]:
    """Each distinct statement's plan (its detail lines)."""
    out: dict[str, list[str]] = {}
    with sqlite3.connect(db) as conn:
        for sql in statements:
            if NOT_QUERIES.match(sql) or sql in out:
                continue
            out[sql] = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    return out


def _scans(plans: dict[str, list[str]]) -> list[str]:
    return [
        f"{detail}  <-  {sql[:300]}"
        for sql, details in plans.items()
        for detail in details
        if (found := SCAN.search(detail)) and found.group(1) in GROWING
    ]


def test_a_pass_over_a_table_is_found(tmp_path: Path) -> None:
    """The check itself: a query with no index to use, and one that walks a whole index."""
    generate(tmp_path, messages=2_000, conversations=200)
    plans = _plans(
        tmp_path / "imhub.db",
        ["SELECT * FROM person_msg WHERE body = 'x'", "SELECT count(*) FROM chat"],
    )
    found = _scans(plans)
    assert len(found) == 2 and "SCAN person_msg" in found[0] and "SCAN chat" in found[1], found


async def test_no_query_on_the_send_login_and_sync_paths_scans_a_table(tmp_path: Path) -> None:
    generate(tmp_path, messages=30_000, conversations=1_000)
    db = tmp_path / "imhub.db"
    config = Config(port=0, data_dir=tmp_path, token_secret=SECRET, api_key=API_KEY,
                    log_level="WARNING")  # fmt: skip
    app = App(config)
    statements: list[str] = []

    @event.listens_for(app.engine.sync_engine, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.driver_connection._conn.set_trace_callback(statements.append)

    await app.start()
    clients: list[TcpClient] = []
    try:
        clients = await _drive(app.gateway.port, app.auth)
    finally:
        await app.stop()  # with the clients still connected: the server ends their sessions
        for client in clients:
            await client.close()
    plans = _plans(db, statements)
    queries = [sql for sql in plans if not sql.lstrip().upper().startswith("INSERT")]
    assert len(queries) > 20, plans  # the trace saw the paths' reads and updates
    assert _scans(plans) == [], "\n".join(_scans(plans))
    with sqlite3.connect(db) as conn:
        conn.execute("ANALYZE")
    analyzed = _plans(db, statements)
    assert _scans(analyzed) == [], "\n".join(_scans(analyzed))
