"""What a node learns only from the bus is derived again from storage after a gap in it: a
user deleted, a notice, a read receipt, a group (re)join while Redis was away; presence reads
while it is away; and how soon the cluster is whole again once Redis answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from imhub.client import GroupChanged, ImClient, Message
from tests.client.conftest import App
from tests.cluster.conftest import Node
from tests.cluster.test_failures import until
from tests.helpers import TIMEOUT
from tests.proxy import Proxy

DOWN = "cluster bus (Redis) unavailable"
BACK = "cluster bus (Redis) is back"


async def logged(node: Node, text: str, count: int = 1) -> None:
    async def seen() -> bool:
        return node.log().count(text) >= count

    try:
        await until(seen)
    except TimeoutError:
        raise AssertionError(f"{text!r} not logged {count} times:\n{node.log()}") from None


async def redis_away(redis_server: Any, *nodes: Node) -> None:
    """Stop Redis and wait until every node has noticed."""
    counts = [n.log().count(DOWN) for n in nodes]
    redis_server.stop()
    for node, n in zip(nodes, counts, strict=True):
        await logged(node, DOWN, n + 1)


async def redis_back(redis_server: Any, *nodes: Node) -> None:
    counts = [n.log().count(BACK) for n in nodes]
    redis_server.start()
    for node, n in zip(nodes, counts, strict=True):
        await logged(node, BACK, n + 1)


async def test_user_deleted_while_redis_away_is_ended_when_it_returns(
    cluster: Any, redis_server: Any
) -> None:
    one, two = cluster(2)
    b, cb = await two.online("b")
    await redis_away(redis_server, one, two)
    status, _ = await one.call("DELETE", f"/api/v1/users/{b}")  # its broadcast is lost
    assert status == 204
    await redis_back(redis_server, one, two)
    ended = await cb.expect(8, TIMEOUT * 3)
    assert (ended["code"], ended["reason"]) == (401, "user deleted")
    assert await cb.closed()

    async def gone() -> bool:
        _, page = await one.call("GET", "/api/v1/online")
        return b not in [u["userId"] for u in page["users"]]

    await until(gone)


async def test_notice_sent_while_redis_away_reaches_a_user_online_elsewhere(
    cluster: Any, redis_server: Any
) -> None:
    one, two = cluster(2)
    b, cb = await two.online("b")
    await redis_away(redis_server, one, two)
    status, answer = await one.post("/api/v1/notices", {"toUserIds": [b], "body": "while away"})
    assert (status, answer["pending"]) == (200, [b])
    await redis_back(redis_server, one, two)
    got = await cb.expect(7, TIMEOUT * 3)  # no new login needed
    assert (got["noticeId"], got["body"]) == (answer["noticeId"], "while away")
    assert await cb.silent(0.3)  # once


async def test_read_receipt_of_a_catch_up_reaches_the_sender(
    cluster: Any, redis_server: Any
) -> None:
    one, two = cluster(2)
    a, ca = await one.online("a")
    b, cb = await two.online("b")
    first = await ca.chat(b, "m1", "one")
    await cb.expect(7, TIMEOUT * 2)
    await cb.send({"msgType": 5, "chatId": first["chatId"], "msgIdClient": "enter"})
    await cb.next_of(lambda m: m["msgType"] == 5)
    await redis_away(redis_server, one, two)
    second = await ca.chat(b, "m2", "two")
    await redis_back(redis_server, one, two)
    got = await cb.next_of(lambda m: m.get("seq") == second["seq"])
    assert got["msgType"] == 3  # shown: a chat, read at once
    receipt = await ca.next_of(lambda m: m["msgType"] == 12 and m["seq"] == second["seq"])
    assert (receipt["chatId"], receipt["fromUserId"]) == (first["chatId"], b)


async def test_readded_member_gets_the_add_its_own_post_overtook(
    postgres_db: Any, redis_server: Any, tmp_path: Path
) -> None:
    """A member removed and added again, whose node never hears of the add (its news is
    lost), posts: its own post (the seq after the add) must not carry the connection past
    the add event; the gap is filled from storage at once."""
    proxy = await Proxy(redis_server.port).start()
    one = Node(tmp_path / "one", postgres_db, cluster=redis_server.url)
    two = Node(tmp_path / "two", postgres_db, cluster=f"redis://127.0.0.1:{proxy.port}/0")
    try:
        owner, co = await one.online("owner")
        m, cm = await two.online("m")
        x = await one.add_user("x")  # three: a group of two would be a one-to-one chat
        status, team = await one.post(
            "/api/v1/teams/create", {"userId": owner, "teamName": "g", "memberIds": [m, x]}
        )
        assert status in (200, 201) and "teamId" in team, team
        team_id = team["teamId"]
        await cm.expect(16, TIMEOUT * 2)
        await co.send({"msgType": 18, "teamId": team_id, "memberIds": [m], "msgIdClient": "r"})
        removed = await co.next_of(lambda x: x.get("msgIdClient") == "r")
        assert (await cm.next_of(lambda x: x["msgType"] == 18))["seq"] == removed["seq"]
        proxy.blackhole = True  # node two hears nothing more
        await co.chat_team(team_id, "o1", "not for m")  # between the removal and the add
        await co.send({"msgType": 17, "teamId": team_id, "memberIds": [m], "msgIdClient": "a"})
        added = await co.next_of(lambda x: x.get("msgIdClient") == "a")
        await cm.send({"msgType": 3, "teamId": team_id, "msgIdClient": "p", "body": "back"})
        posted = await cm.next_of(lambda x: x.get("msgIdClient") == "p")
        assert posted["seq"] == added["seq"] + 1, posted
        event = await cm.next_of(lambda x: x["msgType"] == 17, TIMEOUT * 2)
        assert event["seq"] == added["seq"]
    finally:
        one.stop()
        two.stop()
        await proxy.close()


async def test_membership_churn_while_redis_away_reaches_the_online_member(
    cluster: Any, redis_server: Any
) -> None:
    """Outside tester: while Redis was away a member online on another node was removed,
    added, removed and added again, with posts between. Once it returned they were given
    only what followed their last add: the fill read the last membership alone. They get
    what a lone server gives them live: each membership's rows, the events that ended one
    included, and nothing stored while they were out; once each, in order."""
    one, two = cluster(2)
    owner, co = await one.online("owner")
    b, cb = await two.online("b")
    x = await one.add_user("x")  # three: a group of two would be a one-to-one chat
    await co.send({"msgType": 16, "teamName": "g", "memberIds": [b, x], "msgIdClient": "c"})
    team = (await co.next_of(lambda m: m.get("msgIdClient") == "c"))["teamId"]
    await co.chat_team(team, "p0", "P0")

    def of_team(m: dict[str, Any]) -> bool:
        return m.get("teamId") == team and "code" not in m

    assert [(await cb.next_of(of_team))["seq"] for _ in range(2)] == [1, 2]
    # And an application on the client library, beside it on node two: it must not stall on
    # the gap at 7 (nothing there is theirs), nor repeat anything.
    app = App(ImClient(f"tcp://127.0.0.1:{two.port}", two.token(b)))
    await app.client.start()
    try:
        await app.until(lambda: [e.seq for e in app_rows(app, team)] == [1, 2])
        await redis_away(redis_server, one, two)
        seqs = []
        for i, op in enumerate(("remove", "add", "P1", "remove", "P2", "add", "P3")):
            mid = f"op{i}"
            request: dict[str, Any] = {"teamId": team, "msgIdClient": mid}
            if op in ("remove", "add"):
                request |= {"msgType": 18 if op == "remove" else 17, "memberIds": [b]}
            else:
                request |= {"msgType": 3, "body": op}
            await co.send(request)
            answer = await co.next_of(lambda m, mid=mid: m.get("msgIdClient") == mid)
            assert answer["code"] == 0, answer
            seqs.append(answer["seq"])
        assert seqs == [3, 4, 5, 6, 7, 8, 9]
        await redis_back(redis_server, one, two)
        got: list[dict[str, Any]] = []
        try:
            while len(got) < 6:
                got.append(await cb.next_of(of_team, TIMEOUT * 3))
        except TimeoutError:
            raise AssertionError(f"b got only seqs {[m['seq'] for m in got]}") from None
        assert [(m["seq"], m["msgType"]) for m in got] == [
            (3, 18), (4, 17), (5, got[2]["msgType"]), (6, 18), (8, 17), (9, got[5]["msgType"])
        ]  # fmt: skip
        assert [got[2].get("body"), got[5].get("body")] == ["P1", "P3"]
        assert await cb.silent(0.5)  # once each: not P2 (7), no repeat
        await app.until(lambda: len(app_rows(app, team)) >= 8)
        assert [e.seq for e in app_rows(app, team)] == [1, 2, 3, 4, 5, 6, 8, 9]
    finally:
        await app.client.close()


def app_rows(app: App, team: int) -> list[Message | GroupChanged]:
    """What the application was handed of the group, in order."""
    return [e for e in app.events if isinstance(e, Message | GroupChanged) and e.team_id == team]


async def test_presence_while_redis_away_is_a_clear_503(cluster: Any, redis_server: Any) -> None:
    one, two = cluster(2)
    b, _ = await two.online("b")
    await redis_away(redis_server, one, two)
    for _ in range(3):
        status, answer = await one.call("GET", f"/api/v1/users/{b}/online")
        assert status == 503, answer
        assert "Redis" in answer["reason"], answer
        status, answer = await one.call("GET", "/api/v1/online")
        assert status == 503, answer
        status, answer = await one.post("/api/v1/notices/online", {"body": "x"})
        assert status == 503, answer
    log = one.log()
    assert "Traceback" not in log
    assert log.count("presence read refused") == 1


async def test_redis_restart_recovery_is_prompt(cluster: Any, redis_server: Any) -> None:
    """Twice (the backoff starts over after a link that worked): once Redis answers again,
    both nodes are back within 2 s and live delivery across them works; one outage each."""
    one, two = cluster(2)
    a, ca = await one.online("a")
    b, cb = await two.online("b")
    for _ in (1, 2):
        await redis_away(redis_server, one, two)
        await asyncio.sleep(4.0)  # an outage of some seconds: the backoff grows meanwhile
        started = time.monotonic()
        await redis_back(redis_server, one, two)
        assert time.monotonic() - started < 2.0

        async def live() -> bool:
            sent = await ca.chat(b, f"r-{time.monotonic()}", "ping")
            got = await cb.next_of(lambda m: m["msgType"] == 7)
            return bool(got["seq"] == sent["seq"])  # not a catch-up of an older one

        await until(live)
        assert time.monotonic() - started < 2.5
    for node in (one, two):
        assert node.log().count(DOWN) == 2  # logged (and counted) once per outage
