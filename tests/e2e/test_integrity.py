"""A write that fails leaves no trace: faults injected into the server's own database.

Triggers installed in the server's SQLite file make its statements fail (``RAISE(ABORT)``, a
real failing statement inside the writer's transaction) at random or on a chosen body, while
users send one-to-one, group, recall and group-management writes over TCP. The invariants are
then checked from a fresh read of the database and from what live clients received.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.faults import install_faults, set_faults
from tests.helpers import TIMEOUT, Client, ServerProcess


@dataclass
class Peer:
    """A logged-in test user whose connection's answers and deliveries are told apart."""

    user_id: int
    client: Client
    answers: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    ids: itertools.count[int] = field(default_factory=itertools.count)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.client.recv(timeout=3600)
            mid = msg.get("msgIdClient")
            if "code" in msg and mid in self.answers:
                self.answers.pop(mid).set_result(msg)
            elif "seq" in msg and msg["msgType"] != 12:
                self.delivered.append(msg)
                self.arrived.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds, re-checked at each delivery (a delivery may come after
        the sender's answer: they travel on different connections)."""
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()

    async def ask(
        self, request: dict[str, Any], mid: str | None = None, retry: bool = True
    ) -> dict[str, Any]:
        """Send until the answer is not a storage failure (500), unless not ``retry``; same
        ``msgIdClient`` each time for a chat, so a retry is a retry."""
        mid = mid or f"req-{self.user_id}-{next(self.ids)}"
        while True:
            future = asyncio.get_running_loop().create_future()
            self.answers[mid] = future
            await self.client.send({**request, "msgIdClient": mid})
            answer = await asyncio.wait_for(future, TIMEOUT)
            if answer.get("code") != 500 or not retry:
                return answer
            assert "nothing was stored" in answer["reason"]

    async def stop(self) -> None:
        assert self.reader is not None
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.client.close()


async def peers(server: ServerProcess, n: int) -> list[Peer]:
    out = []
    for i in range(n):
        user_id, client = await server.online(f"p{i}")
        peer = Peer(user_id, client)
        peer.start()
        out.append(peer)
    return out


@dataclass
class Acked:
    """What the server acknowledged: the truth the database is checked against."""

    chats: dict[tuple[int, str], tuple[str, int, int, str]] = field(default_factory=dict)
    recalls: set[tuple[str, int, int]] = field(default_factory=set)  # (kind, conv id, seq)
    members: dict[int, set[int]] = field(default_factory=dict)
    ever: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))


async def chat_loop(peer: Peer, everyone: list[Peer], acked: Acked, rng: random.Random) -> None:
    mine: list[tuple[str, int, int]] = []
    for n in range(40):
        roll = rng.random()
        if roll < 0.15 and mine:
            kind, conv, seq = rng.choice(mine)
            key = "chatId" if kind == "c" else "teamId"
            answer = await peer.ask({"msgType": 10, key: conv, "seq": seq})
            if kind == "t" and answer["code"] == 403:  # no longer a member of that group
                continue
            assert answer["code"] == 0, answer
            assert answer["refSeq"] == seq
            acked.recalls.add((kind, conv, seq))
            continue
        mid, body = f"m{n}", f"{peer.user_id}:{n}"
        if roll < 0.45 and acked.members:
            team = rng.choice(sorted(acked.members))
            answer = await peer.ask({"msgType": 3, "teamId": team, "body": body}, mid)
            if answer["msgType"] == 8:  # not a member now: refused, and so not stored
                assert answer["code"] == 403, answer
                continue
        else:
            other = rng.choice([p for p in everyone if p is not peer])
            answer = await peer.ask({"msgType": 3, "toUserId": other.user_id, "body": body}, mid)
        assert answer["msgType"] == 4, answer
        kind, conv = ("t", answer["teamId"]) if "teamId" in answer else ("c", answer["chatId"])
        acked.chats[(peer.user_id, mid)] = (kind, conv, answer["seq"], body)
        mine.append((kind, conv, answer["seq"]))


async def owner_loop(owner: Peer, others: list[Peer], acked: Acked, rng: random.Random) -> None:
    for n in range(3):
        start = {p.user_id for p in rng.sample(others, 3)}
        answer = await owner.ask({"msgType": 16, "teamName": f"g{n}", "memberIds": sorted(start)})
        assert answer["code"] == 0, answer
        team = answer["teamId"]
        acked.members[team] = {owner.user_id, *start}
        acked.ever[team] |= acked.members[team]
    for _ in range(30):
        team = rng.choice(sorted(acked.members))
        who = rng.choice(others).user_id
        op = 18 if who in acked.members[team] else 17
        answer = await owner.ask({"msgType": op, "teamId": team, "memberIds": [who]})
        assert answer["code"] == 0, answer
        if op == 17:
            acked.members[team].add(who)
            acked.ever[team].add(who)
        else:
            acked.members[team].discard(who)


def check_database(server: ServerProcess, acked: Acked) -> None:
    with server.db() as db:
        pairs = {
            chat_id: {a, b}
            for chat_id, a, b in db.execute(
                "select chat_id, from_user_id, to_user_id from chat where event_type = 0"
            )
        }
        # Every stored one-to-one message is in the chat of its own pair.
        for chat_id, sender, to in db.execute(
            "select chat_id, from_user_id, to_user_id from person_msg"
        ):
            assert pairs.get(chat_id) == {sender, to}, (chat_id, sender, to)
        # Every conversation's history is 1, 2, 3, … and ends at its last_seq.
        for table, key, head in (
            ("person_msg", "chat_id", "select chat_id, last_seq from chat where event_type = 0"),
            ("team_msg", "team_id", "select team_id, last_seq from team"),
        ):
            for conv, last in db.execute(head).fetchall():
                seqs = [
                    s for (s,) in db.execute(f"select seq from {table} where {key}=? order by seq",
                                             (conv,))
                ]  # fmt: skip
                assert seqs == list(range(1, last + 1)), (table, conv, last, seqs)
        # Every acknowledged message is stored once, where its answer said.
        for (sender, mid), (kind, conv, seq, body) in acked.chats.items():
            table, key = ("person_msg", "chat_id") if kind == "c" else ("team_msg", "team_id")
            rows = db.execute(
                f"select {key}, seq, body from {table} "
                "where from_user_id=? and msg_id_client=? and msg_type=3",
                (sender, mid),
            ).fetchall()
            assert rows == [(conv, seq, body)], (sender, mid, rows)
        for kind, conv, seq in acked.recalls:
            table, key = ("person_msg", "chat_id") if kind == "c" else ("team_msg", "team_id")
            flag = db.execute(
                f"select cancel_flag from {table} where {key}=? and seq=?", (conv, seq)
            ).fetchone()
            assert flag == (1,), (kind, conv, seq)
        # Membership is what the acknowledged operations made it.
        for team, members in acked.members.items():
            stored = {
                u
                for (u,) in db.execute(
                    "select to_user_id from chat "
                    "where event_type = 1 and team_id = ? and delete_flag = false",
                    (team,),
                )
            }
            assert stored == members, (team, stored, members)
        # Nothing stored but what was acknowledged, and one row per acknowledged message.
        total = db.execute(
            "select (select count(*) from person_msg where msg_type = 3)"
            " + (select count(*) from team_msg where msg_type = 3)"
        ).fetchone()[0]
        assert total == len(acked.chats)


def check_deliveries(server: ServerProcess, everyone: list[Peer], acked: Acked) -> None:
    """No one received a message outside their conversations, and what they received is what
    was stored at that place."""
    with server.db() as db:
        for peer in everyone:
            for msg in peer.delivered:
                if "chatId" in msg:
                    pair = db.execute(
                        "select from_user_id, to_user_id from chat where chat_id = ?",
                        (msg["chatId"],),
                    ).fetchone()
                    assert peer.user_id in pair, (peer.user_id, msg)
                    table, key, conv = "person_msg", "chat_id", msg["chatId"]
                else:
                    assert peer.user_id in acked.ever[msg["teamId"]], (peer.user_id, msg)
                    table, key, conv = "team_msg", "team_id", msg["teamId"]
                stored = db.execute(
                    f"select from_user_id, msg_type from {table} where {key}=? and seq=?",
                    (conv, msg["seq"]),
                ).fetchone()
                assert stored == (msg["fromUserId"], msg["msgType"] if msg["msgType"] != 7
                                  else 3), (msg, stored)  # fmt: skip


async def test_failed_writes_leave_no_trace_under_random_faults(make_server: Any) -> None:
    """About one write statement in eight fails, anywhere in the write path, while six users
    chat, recall and one of them manages three groups."""
    server = make_server()
    everyone = await peers(server, 6)
    install_faults(server.database)
    set_faults(server.database, rate=12)
    acked = Acked()
    rng = random.Random(9)
    owner, others = everyone[0], everyone[1:]
    await owner_loop(owner, others, acked, random.Random(rng.random()))
    await asyncio.gather(
        owner_loop(owner, others, acked, random.Random(rng.random())),
        *(chat_loop(p, everyone, acked, random.Random(rng.random())) for p in everyone),
    )
    set_faults(server.database, rate=0)
    for peer in everyone:
        await peer.stop()
    check_database(server, acked)
    check_deliveries(server, everyone, acked)


async def test_one_bad_write_fails_alone_and_poisons_no_one(make_server: Any) -> None:
    """A message that the database refuses shares a batch with first messages of new pairs:
    it alone fails; each new pair gets its own chat starting at seq 1; nothing is stored twice
    or in the wrong chat."""
    server = make_server()
    everyone = await peers(server, 5)
    install_faults(server.database)
    set_faults(server.database, poison="poison")
    bad, victim, *targets = everyone
    for round_ in range(5):
        sends = [
            bad.ask(
                {"msgType": 3, "toUserId": victim.user_id, "body": "poison"}, f"bad{round_}", False
            )
        ]
        sends += [
            victim.ask({"msgType": 3, "toUserId": t.user_id, "body": f"to {t.user_id}"},
                       f"v{round_}-{t.user_id}")
            for t in targets
        ]  # fmt: skip
        answers = await asyncio.gather(*sends)
        assert answers[0]["msgType"] == 8 and answers[0]["code"] == 500, answers[0]
        for answer in answers[1:]:
            assert answer["msgType"] == 4, answer
            assert answer["seq"] == round_ + 1, answer  # no number lost to the failed batch
    with server.db() as db:
        chats = db.execute(
            "select from_user_id, to_user_id, last_seq from chat where event_type = 0"
        ).fetchall()
        assert sorted(chats) == sorted(
            (min(victim.user_id, t.user_id), max(victim.user_id, t.user_id), 5) for t in targets
        )
        assert db.execute("select count(*) from person_msg where body = 'poison'").fetchone() == (
            0,
        )
    for t in targets:

        def got(t: Peer = t) -> list[dict[str, Any]]:
            return [m for m in t.delivered if m.get("fromUserId") == victim.user_id]

        await t.until(lambda: len(got()) >= 5)
        assert [m["body"] for m in got()] == [f"to {t.user_id}"] * 5, got()
    for peer in everyone:
        await peer.stop()


async def test_a_chat_may_use_the_ids_the_server_gives_its_events(server: ServerProcess) -> None:
    """Issue 9's reproduction: a chat whose msgIdClient equals a recall's or a group event's
    server-made id is stored as a new message, and the recall and group operations that
    follow still work."""
    m_id, m = await server.online("m")
    s_id, s = await server.online("s")
    orig = await m.chat(s_id, "orig", "x")
    chat_id, seq = orig["chatId"], orig["seq"]
    clash = await m.chat(s_id, f"recall-{chat_id}-{seq}", "same id as the recall's")
    assert clash["seq"] == seq + 1 and clash["msgIdServer"] != orig["msgIdServer"]
    await m.send({"msgType": 10, "chatId": chat_id, "seq": seq, "msgIdClient": "r1"})
    recalled = await m.expect(10)
    assert recalled["code"] == 0 and recalled["refSeq"] == seq, recalled
    await m.send({"msgType": 10, "chatId": chat_id, "seq": seq, "msgIdClient": "r2"})
    again = await m.expect(10)
    assert again["seq"] == recalled["seq"]  # a repeated recall gets the first one's answer
    # A group event's id, taken before the event exists.
    await m.send({"msgType": 16, "teamName": "t", "memberIds": [s_id, await server.add_user()]})
    created = await m.expect(16)
    assert created["code"] == 0 and "teamId" in created, created
    team = created["teamId"]
    taken = await m.chat_team(team, f"team-17-{team}-3", "before the add")
    await m.send({"msgType": 17, "teamId": team, "memberIds": [await server.add_user("d")]})
    added = await m.expect(17)
    assert added["code"] == 0 and added["seq"] == taken["seq"] + 1, added
    # Events carry no msgIdClient a client could take for one of its own.
    events = [await s.expect(t) for t in (7, 7, 10, 16, 7, 17)]
    assert [e.get("msgIdClient") for e in events] == [
        "orig",
        f"recall-{chat_id}-{seq}",
        None,
        None,
        f"team-17-{team}-3",
        None,
    ]
    assert m_id != s_id


async def test_a_login_in_a_batch_that_fails_leaves_no_trace(make_server: Any) -> None:
    """Logins share batches with writes that fail at random: a batch that does not commit is
    retried one job at a time, and a session registered in it must not keep what it read
    there (floors above what was finally stored would drop later live messages) nor stay
    registered twice."""
    server = make_server()
    _, s = await server.online("sender")
    db = server.database
    install_faults(db)
    for round_ in range(8):
        user = await server.add_user(f"u{round_}")
        await s.chat(user, f"warm{round_}", "first")  # the pair exists
        c = await server.connect()
        set_faults(db, rate=25)
        for i in range(60):  # writes before and after the login, some of them failing
            if i == 30:
                await c.send({"msgType": 1, "token": server.token(user), "backlog": False})
            await s.send({"msgType": 3, "toUserId": user, "msgIdClient": f"b{round_}-{i}",
                          "body": "busy"})  # fmt: skip
        while (login := await c.recv())["msgType"] != 1:
            pass  # busy messages stored after the login, live
        answers = [await s.recv() for _ in range(60)]
        set_faults(db)
        assert login["code"] == 0 or login["code"] == 500, login
        if login["code"] != 0:
            await c.close()
            continue
        assert len(answers) == 60
        after = await s.chat(user, f"after{round_}", "once")
        seqs = []  # every message stored after the login arrives live, once
        while not seqs or seqs[-1] != after["seq"]:
            seqs.append((await c.expect(7))["seq"])
        assert len(seqs) == len(set(seqs)), seqs
        assert await c.silent(0.2)  # and not a second copy of the last
        await c.close()
