"""The soak's load: virtual users on raw TCP connections that log in, chat (one-to-one and in
groups), drop (abruptly or by logout), reconnect and sync, and keep a ledger to prove that
nothing was lost, duplicated or misdelivered.

One process holds thousands of them: a user is a few small dicts, a connection is
``bench.common.Conn`` (a callback per frame). What they check, as a client must:

- **the ledger**: every (conversation, seq) anyone learns, from a ``chat_answer`` or a
  delivery, carries the same message everywhere (``conflicts``), and no client message is
  stored at two seqs (``dup_stored``, checked at the end);
- **once per connection**: a live copy at or below what the connection was already given is
  a duplicate (``dup_live``); sync pages may repeat what a user holds (pages are stateless and
  the protocol says to recognise a repeat by its seq), so those are counted, not failed;
- **nothing lost**: at the end every member of every conversation holds every seq up to the
  newest (``lost``), without a final sync filling anything (``late``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from typing import Any

from bench.common import SECRET, Conn
from imhub.service.auth import TokenAuthority

Conv = tuple[int, int]  # (0, chatId) or (1, teamId)
EVENT = -1  # the ledger's tag for the server's own records (group events)
HEARTBEAT_S = 25.0


class Link(Conn):
    """A ``Conn`` that tells its user when it is gone."""

    def __init__(self, user: User) -> None:
        super().__init__(user.receive)
        self.user = user

    def connection_lost(self, exc: Exception | None) -> None:
        self.user.lost(self)


class Held:
    """The seqs a user holds in one conversation: all up to ``prefix``, and some above."""

    __slots__ = ("extra", "prefix")

    def __init__(self, prefix: int = 0) -> None:
        self.prefix = prefix
        self.extra: set[int] = set()

    def add(self, seq: int) -> bool:
        """Hold ``seq``; False when it was held already."""
        if seq <= self.prefix or seq in self.extra:
            return False
        if seq == self.prefix + 1:
            self.prefix = seq
            while self.prefix + 1 in self.extra:
                self.extra.remove(self.prefix + 1)
                self.prefix += 1
        else:
            self.extra.add(seq)
        return True


class User:
    __slots__ = (
        "conn",
        "floor",
        "held",
        "last_write",
        "load",
        "n",
        "peers",
        "pending",
        "state",
        "teams",
        "uid",
    )

    def __init__(self, load: Load, uid: int, peers: list[int]) -> None:
        self.load = load
        self.uid = uid
        self.peers = peers
        self.teams: list[int] = []
        self.conn: Link | None = None
        self.state = "offline"  # connecting, syncing, online, closing
        self.held: dict[Conv, Held] = {}
        self.floor: dict[Conv, int] = {}  # per connection: the highest seq it was given
        self.pending: dict[int, dict[str, Any]] = {}  # sends not yet answered, in order
        self.n = 0
        self.last_write = 0.0

    # -- the connection's life -------------------------------------------------------------

    async def connect(self) -> None:
        self.state = "connecting"
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Link(self), "127.0.0.1", self.load.port)
        except OSError:
            self.load.stats["connect_failed"] += 1
            self.state = "offline"
            self.load.reconnect_later(self)
            return
        self.conn = conn
        self.floor = {}
        self.write({"msgType": 1, "token": self.load.auth.mint(self.uid, 86_400), "backlog": False})

    def write(self, obj: dict[str, Any]) -> None:
        if self.conn is not None:
            self.conn.write(obj)
            self.last_write = time.monotonic()

    def sync(self) -> None:
        kinds = ("chatId", "teamId")
        convs = [{kinds[k]: cid, "seq": h.prefix} for (k, cid), h in self.held.items()]
        self.write({"msgType": 11, "convs": convs, "limit": 200})

    def drop(self, clean: bool) -> None:
        conn = self.conn
        if conn is None or conn.transport is None or self.state != "online":
            return
        if clean:
            self.state = "closing"
            self.write({"msgType": 2})  # the server answers what came before, then closes
            self.load.stats["drops_clean"] += 1
        else:
            conn.transport.abort()
            self.load.stats["drops_abrupt"] += 1

    def lost(self, conn: Link) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        self.state = "offline"
        self.load.reconnect_later(self)

    def send(self, rng: random.Random) -> None:
        self.n += 1
        msg: dict[str, Any] = {"msgType": 3, "msgIdClient": f"{self.uid}-{self.n}"}
        if self.teams and rng.random() < self.load.group_share:
            msg["teamId"] = rng.choice(self.teams)
        else:
            msg["toUserId"] = rng.choice(self.peers)
        msg["body"] = msg["msgIdClient"]
        self.pending[self.n] = msg
        self.write(msg)
        self.load.stats["sent"] += 1

    # -- what arrives ----------------------------------------------------------------------

    def receive(self, msg: dict[str, Any]) -> None:
        t = msg["msgType"]
        load = self.load
        if "code" in msg:  # an answer
            if msg["code"] != 0:
                load.error(self, msg)
            elif t == 4:
                self.answered(msg)
            elif t == 11:
                self.page(msg)
            elif t == 1:
                self.state = "syncing"
                self.sync()
            elif t == 16:
                load.team_created(self, msg)
            return
        if (t in (3, 7) and "seq" in msg) or 16 <= t <= 21:
            self.delivered(msg, live=True)

    def answered(self, msg: dict[str, Any]) -> None:
        n = int(msg["msgIdClient"].split("-")[1])
        sent = self.pending.pop(n, None)
        if sent is None:
            return  # the answer to a resend of what a drop left unanswered, answered already
        if "teamId" in msg:
            conv: Conv = (1, msg["teamId"])
        else:
            conv = (0, msg["chatId"])
            self.load.members.setdefault(conv, (self.uid, sent["toUserId"]))
        self.load.learn(conv, msg["seq"], (self.uid << 32) | n, self)
        self.held.setdefault(conv, Held()).add(msg["seq"])
        self.load.stats["acked"] += 1

    def delivered(self, msg: dict[str, Any], live: bool) -> None:
        load = self.load
        if "teamId" in msg:
            conv: Conv = (1, msg["teamId"])
            members = load.members.get(conv)
            if members is not None and self.uid not in members:
                load.fail("misdelivered", f"user {self.uid} got group {conv[1]}'s {msg}")
        else:
            conv = (0, msg["chatId"])
            peer = int(msg.get("fromUserId", 0))
            if msg.get("toUserId") not in (self.uid, None) and peer != self.uid:
                load.fail("misdelivered", f"user {self.uid} got {msg}")
            if peer != self.uid:
                load.members.setdefault(conv, (peer, self.uid))
        seq = msg["seq"]
        if live:
            if seq <= self.floor.get(conv, 0):
                load.fail("dup_live", f"user {self.uid} got {conv} seq {seq} twice live")
            self.floor[conv] = seq
        elif seq > self.floor.get(conv, 0):
            self.floor[conv] = seq
        client_id = msg.get("msgIdClient")
        if client_id is None:
            tag = EVENT
        else:
            sender, n = client_id.split("-")
            tag = (int(sender) << 32) | int(n)
            if msg.get("body") != client_id or int(sender) != msg.get("fromUserId"):
                load.fail("misdelivered", f"user {self.uid} got a changed message {msg}")
        load.learn(conv, seq, tag, self)
        if self.held.setdefault(conv, Held()).add(seq):
            load.stats["received"] += 1
            if load.final:
                load.stats["late"] += 1
        else:
            load.stats["repeats_in_sync"] += 1

    def page(self, msg: dict[str, Any]) -> None:
        for item in msg["messages"]:
            if "seq" in item:
                self.delivered(item, live=False)
        if msg["more"]:
            self.sync()
            return
        if self.load.final:
            self.load.final_page(self, msg)
            return
        self.state = "online"
        for sent in self.pending.values():  # what a drop left unanswered, with the same id
            self.write(sent)
            self.load.stats["resent"] += 1


class Load:
    """All the users, the schedule of sends and drops, and the ledger."""

    def __init__(
        self,
        port: int,
        users: int,
        peers: int = 6,
        groups: int = 0,
        group_size: int = 10,
        group_share: float = 0.2,
        seed: int = 1,
    ) -> None:
        self.port = port
        self.auth = TokenAuthority(SECRET)
        self.rng = random.Random(seed)
        self.group_share = group_share
        half = max(1, peers // 2)
        self.users = {
            u: User(self, u, [((u - 1 + d) % users) + 1 for d in range(-half, half + 1) if d])
            for u in range(1, users + 1)
        }
        self.group_plan = [
            list(range(g * group_size + 1, (g + 1) * group_size + 1))
            for g in range(min(groups, users // group_size))
        ]
        self.members: dict[Conv, tuple[int, ...]] = {}
        self.ledger: dict[Conv, array[int]] = {}
        self.final = False
        self.final_left = 0
        self.final_done = asyncio.Event()
        self.failures: dict[str, list[str]] = {}
        self.errors: dict[int, int] = {}
        self.created = asyncio.Event()
        self.stats = dict.fromkeys(
            (
                "sent",
                "acked",
                "resent",
                "received",
                "repeats_in_sync",
                "late",
                "drops_abrupt",
                "drops_clean",
                "reconnects",
                "connect_failed",
                "lost",
                "dup_stored",
                "conflicts",
            ),
            0,
        )

    # -- bookkeeping ---------------------------------------------------------------------------

    def fail(self, kind: str, detail: str) -> None:
        found = self.failures.setdefault(kind, [])
        if len(found) < 5:
            found.append(detail)
        if kind in self.stats:
            self.stats[kind] += 1
        else:
            self.stats[kind] = 1

    def error(self, user: User, msg: dict[str, Any]) -> None:
        self.errors[msg["code"]] = self.errors.get(msg["code"], 0) + 1
        self.fail("errors", f"user {user.uid}: {msg}")

    def learn(self, conv: Conv, seq: int, tag: int, user: User) -> None:
        """The ledger: what is at ``seq`` in ``conv``, the same for everyone who learns it."""
        tags = self.ledger.get(conv)
        if tags is None:
            tags = self.ledger[conv] = array("q")
        if len(tags) < seq:
            tags.extend([0] * (seq - len(tags)))
        if tags[seq - 1] == 0:
            tags[seq - 1] = tag
        elif tags[seq - 1] != tag:
            self.fail("conflicts", f"{conv} seq {seq}: {tags[seq - 1]} and {tag} (user {user.uid})")

    def reconnect_later(self, user: User) -> None:
        self.stats["reconnects"] += 1
        delay = 0.05 if self.final else self.rng.uniform(0.1, 2.0)
        asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(user.connect()))

    def team_created(self, user: User, msg: dict[str, Any]) -> None:
        conv = (1, msg["teamId"])
        self.members[conv] = tuple(msg["memberIds"])
        for uid in msg["memberIds"]:
            self.users[uid].teams.append(msg["teamId"])
        self.learn(conv, msg["seq"], EVENT, user)
        user.held.setdefault(conv, Held()).add(msg["seq"])
        if sum(1 for k in self.members if k[0] == 1) == len(self.group_plan):
            self.created.set()

    def online(self) -> list[User]:
        return [u for u in self.users.values() if u.state == "online"]

    # -- the phases ----------------------------------------------------------------------------

    async def start(self, within: float = 300) -> None:
        """Log everyone in (100 connects at a time), then create the groups."""
        users = list(self.users.values())
        for i in range(0, len(users), 100):
            await asyncio.gather(*(u.connect() for u in users[i : i + 100]))
        await self.until(lambda: all(u.state == "online" for u in users), within, "log in")
        for members in self.group_plan:
            self.users[members[0]].write(
                {"msgType": 16, "teamName": f"g{members[0]}", "memberIds": members[1:]}
            )
        if self.group_plan:
            await asyncio.wait_for(self.created.wait(), within)

    async def run(self, seconds: float, rate: float, drops: float, clean_share: float) -> None:
        """Send ``rate`` messages/s and drop ``drops`` connections/s, for ``seconds``."""
        rng = self.rng
        tick = 0.05
        loop = asyncio.get_running_loop()
        start = loop.time()
        owed_sends = owed_drops = 0.0
        next_beat = start + 1
        while (now := loop.time()) < start + seconds:
            await asyncio.sleep(tick)  # a pacing tick of the open loop, not a wait for a result
            owed_sends += rate * tick
            owed_drops += drops * tick
            if owed_sends < 1 and owed_drops < 1 and now < next_beat:
                continue
            live = self.online()
            if not live:
                continue
            while owed_sends >= 1:
                owed_sends -= 1
                user = rng.choice(live)
                if len(user.pending) < 50:
                    user.send(rng)
            while owed_drops >= 1:
                owed_drops -= 1
                rng.choice(live).drop(rng.random() < clean_share)
            if now >= next_beat:
                next_beat = now + 1
                quiet = time.monotonic() - HEARTBEAT_S
                for user in live:
                    if user.last_write < quiet:
                        user.write({"msgType": 0})

    async def finish(self, within: float = 120) -> None:
        """Let everyone come back and everything be answered, wait until every member holds
        every seq the ledger knows, then sync everyone once more: it must bring nothing."""
        users = list(self.users.values())
        try:
            await self.until(
                lambda: all(u.state == "online" and not u.pending for u in users),
                within,
                "reconnect and answer",
            )
        except TimeoutError as exc:
            for u in users:
                if u.state != "online" or u.pending:
                    self.fail(
                        "stuck", f"{exc}: user {u.uid} {u.state}, {len(u.pending)} unanswered"
                    )
            return
        with contextlib.suppress(TimeoutError):  # counted below as lost
            await self.until(lambda: self.missing(stop_at=1) == 0, within, "deliver")
        self.stats["lost"] = self.missing()
        self.final = True
        self.final_left = len(users)
        for user in users:
            user.sync()
        await asyncio.wait_for(self.final_done.wait(), within)
        for conv, tags in self.ledger.items():
            ids = [t for t in tags if t > 0]
            if len(set(ids)) != len(ids):
                self.fail("dup_stored", f"{conv}: a client message at two seqs")

    def final_page(self, user: User, msg: dict[str, Any]) -> None:
        for conv in msg["convs"]:
            key: Conv = (1, conv["teamId"]) if "teamId" in conv else (0, conv["chatId"])
            held = user.held.get(key)
            if held is None or held.prefix < conv["lastSeq"] or held.extra:
                self.fail("lost", f"user {user.uid} holds {key} short of {conv['lastSeq']}")
        self.final_left -= 1
        if self.final_left == 0:
            self.final_done.set()

    def missing(self, stop_at: int = 0) -> int:
        """How many (member, conversation, seq) the ledger knows and a member does not hold."""
        count = 0
        for conv, tags in self.ledger.items():
            for uid in self.members.get(conv, ()):
                held = self.users[uid].held.get(conv)
                count += len(tags) - (held.prefix + len(held.extra) if held else 0)
                if stop_at and count >= stop_at:
                    return count
        return count

    async def until(self, done: Any, within: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not done():
            if loop.time() > deadline:
                raise TimeoutError(f"soak: {what} did not finish in {within:.0f} s")
            await asyncio.sleep(0.1)  # polling a condition over thousands of users, bounded
