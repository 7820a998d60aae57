"""The crash test's load: users on ``imhub.client`` sending one-to-one and group messages,
recalling their own, and group owners adding, removing and renaming, each keeping its own
record of what the server acknowledged (``Records``), across any number of server kills.

What counts as acknowledged is what a sender was told: a ``Sent`` from ``send_chat`` (its
``chat_answer``), a recall's answer, a group operation's answer. A request whose connection
died before its answer may or may not have been applied: a recall stays undecided (the check
accepts either, but not half of one), and a group operation is decided by asking the server
(``team_info``) once the owner is online again, as docs/client.md tells applications to do.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from imhub.client import ClientError, ImClient, Message, State, StateChanged
from imhub.client.events import Event
from imhub.protocol.messages import ImMsg, MsgType

T = TypeVar("T")

Conv = tuple[str, int]  # ("chat", chat_id) or ("team", team_id)


@dataclass
class Group:
    """The model of one group from its owner's acknowledged operations."""

    team_id: int
    owner: int
    core: frozenset[int]  # members with clients, never removed: they send and receive
    extras: set[int]  # members without clients: added and removed
    name: str
    ops: list[tuple[int, int]] = field(default_factory=list)  # (seq, msgType) acknowledged
    undecided: int = 0  # operations whose answer was lost, decided by asking the server
    dismissed: bool = False

    def members(self) -> set[int]:
        return set() if self.dismissed else set(self.core) | self.extras


@dataclass
class Records:
    """What the senders were told, and what the receivers got."""

    sent: dict[tuple[int, str], tuple[Conv, int, int]] = field(default_factory=dict)
    # (sender, msgIdClient) -> (conversation, seq, msgIdServer)
    recipients: dict[tuple[int, str], tuple[int, ...]] = field(default_factory=dict)
    # when the server stored it (its sendTime) and when the answer came, wall clock seconds
    times: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)
    kills: list[float] = field(default_factory=list)  # when each kill landed, wall clock

    def stored_before_a_kill(self) -> int:
        """Messages stored before a kill and answered after it: their first answer died with
        the server, the resend was answered from the stored copy."""
        return sum(
            any(stored < k < answered for k in self.kills)
            for stored, answered in self.times.values()
        )

    refused: list[str] = field(default_factory=list)  # sends refused: none expected
    recalls: list[tuple[Conv, int, int]] = field(default_factory=list)  # (conv, ref, seq)
    recalls_undecided: list[tuple[Conv, int, str]] = field(default_factory=list)  # and why
    received: dict[int, dict[Conv, list[tuple[int, int, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )  # user -> conv -> [(seq, sender, msgIdClient)]
    groups: list[Group] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _lost(e: Exception) -> bool:
    """The request's answer was lost (its connection dropped, a timeout, a server going
    away), as opposed to a refusal."""
    return isinstance(e, TimeoutError) or (isinstance(e, ClientError) and e.code in (0, 500, 503))


async def _info(client: ImClient, team_id: int) -> ImMsg:
    return await client.group(MsgType.TEAM_INFO, teamId=team_id)


def conv_of(chat_id: int | None, team_id: int | None) -> Conv:
    return ("team", team_id) if team_id else ("chat", chat_id or 0)


class Load:
    """The clients and their loops; ``run()`` until ``stop()``, surviving server kills."""

    def __init__(
        self,
        url: str,
        tokens: dict[int, str],
        extras: list[int],
        rate: float = 60.0,
        seed: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.users = sorted(tokens)
        self.extras = extras
        self.pause = 1.0 / rate  # per user
        self.records = Records()
        self.arrived = asyncio.Event()
        self.online_at: dict[int, float] = {}
        self.clients: dict[int, ImClient] = {}
        for i, user in enumerate(self.users):
            where = url if i % 2 == 0 else url.replace("tcp://", "ws://") + "/ws"
            client = ImClient(where, tokens[user], backoff_base=0.05, backoff_cap=0.4)
            client.add_listener(self._listener(user))
            self.clients[user] = client
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.on_answer: Callable[[], None] | None = None  # called at each chat_answer

    def _listener(self, user: int) -> Any:
        def on_event(event: Event) -> None:
            if isinstance(event, Message):
                conv = conv_of(event.chat_id, event.team_id)
                got = (event.seq, event.from_user_id, event.msg_id_client)
                self.records.received[user][conv].append(got)
                self.arrived.set()
            elif isinstance(event, StateChanged) and event.state is State.ONLINE:
                self.online_at[user] = time.monotonic()
                self.arrived.set()

        return on_event

    def online_since(self, moment: float) -> bool:
        """Every client came online (again) after ``moment`` and still is."""
        return all(
            c.state is State.ONLINE and self.online_at.get(u, 0.0) > moment
            for u, c in self.clients.items()
        )

    def any_online_since(self, moment: float) -> bool:
        return any(t > moment for t in self.online_at.values())

    async def until(self, condition: Callable[[], bool], within: float) -> None:
        """Until ``condition()`` holds, checked again at each message or state change."""
        async with asyncio.timeout(within):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()

    async def start(self, groups: int = 2) -> None:
        await asyncio.gather(*(c.start() for c in self.clients.values()))
        # Groups of four overlapping users each, made before the first kill.
        for g in range(groups):
            owner = self.users[(2 * g) % len(self.users)]
            core = frozenset(self.users[(2 * g + i) % len(self.users)] for i in range(4))
            answer = await self.clients[owner].group(
                MsgType.TEAM_CREATE, teamName=f"crew {g}", memberIds=sorted(core - {owner})
            )
            assert answer.team_id and answer.seq
            group = Group(answer.team_id, owner, core, set(), f"crew {g}")
            group.ops.append((answer.seq, MsgType.TEAM_CREATE))
            self.records.groups.append(group)

    def run(self) -> None:
        for user in self.users:
            self._tasks.append(asyncio.create_task(self._sender(user)))
        for group in self.records.groups:
            self._tasks.append(asyncio.create_task(self._manager(group)))

    async def stop(self, within: float = 60.0) -> None:
        """Stop making new writes and wait until every one made is answered."""
        self._stopping = True
        async with asyncio.timeout(within):
            await asyncio.gather(*self._tasks)
            while self._sends:
                await asyncio.gather(*list(self._sends))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()))

    # -- the writers -----------------------------------------------------------------------

    async def _sender(self, user: int) -> None:
        client = self.clients[user]
        window = asyncio.Semaphore(16)  # sends in flight per user, also while the server is down
        mine: list[tuple[Conv, int]] = []  # own acknowledged messages not yet recalled
        groups = [g for g in self.records.groups if user in g.core]
        while not self._stopping:
            await asyncio.sleep(self.pause * self.rng.uniform(0.5, 1.5))  # pacing, not waiting
            roll = self.rng.random()
            if roll < 0.05 and mine and client.state is State.ONLINE:
                conv, seq = mine.pop(self.rng.randrange(len(mine)))
                self._spawn(self._recall(client, conv, seq))
                continue
            await window.acquire()
            if roll < 0.35 and groups:
                group = self.rng.choice(groups)
                to: dict[str, int] = {"team": group.team_id}
                recipients = tuple(sorted(group.core - {user}))
            else:
                peer = self.rng.choice([u for u in self.users if u != user])
                to, recipients = {"to_user": peer}, (peer,)
            self._spawn(self._send(user, client, to, recipients, mine), window)

    def _spawn(self, work: Awaitable[None], window: asyncio.Semaphore | None = None) -> None:
        task = asyncio.ensure_future(work)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        if window is not None:
            task.add_done_callback(lambda _: window.release())

    async def _send(
        self,
        user: int,
        client: ImClient,
        to: dict[str, int],
        recipients: tuple[int, ...],
        mine: list[tuple[Conv, int]],
    ) -> None:
        mid = f"m{next(self._ids)}"
        try:
            sent = await client.send_chat(body=f"{user}:{mid}", msg_id_client=mid, **to)
        except ClientError as e:
            self.records.refused.append(f"user {user} {mid}: {e}")
            return
        conv = conv_of(sent.chat_id, sent.team_id)
        self.records.sent[(user, mid)] = (conv, sent.seq, sent.msg_id_server)
        self.records.recipients[(user, mid)] = recipients
        self.records.times[(user, mid)] = (sent.send_time / 1000, time.time())
        mine.append((conv, sent.seq))
        if self.on_answer is not None:
            self.on_answer()

    async def _recall(self, client: ImClient, conv: Conv, seq: int) -> None:
        where = {"chat_id": conv[1]} if conv[0] == "chat" else {"team_id": conv[1]}
        try:
            own = await client.recall(seq, **where)
        except (ClientError, TimeoutError) as e:
            if not _lost(e):
                self.records.violations.append(f"recall of {conv} {seq} refused: {e}")
            self.records.recalls_undecided.append((conv, seq, repr(e)))
            return
        self.records.recalls.append((conv, seq, own))

    async def _manager(self, group: Group) -> None:
        client = self.clients[group.owner]
        renames = itertools.count(1)
        sides: list[Group] = []  # small groups this owner made during the load
        while not self._stopping:
            await asyncio.sleep(self.pause * 4 * self.rng.uniform(0.5, 1.5))
            choice = self.rng.random()
            if choice < 0.1:
                await self._create(client, group.owner, sides, f"side {group.owner}.")
                continue
            if choice < 0.15 and any(not g.dismissed for g in sides):
                await self._dismiss(client, self.rng.choice([g for g in sides if not g.dismissed]))
                continue
            outside = [e for e in self.extras if e not in group.extras]
            fields: dict[str, Any] = {"teamId": group.team_id}
            extras, name = set(group.extras), group.name
            if choice < 0.45 and outside:
                op, add = MsgType.TEAM_ADD, self.rng.choice(outside)
                fields["memberIds"] = [add]
                extras.add(add)
            elif choice < 0.8 and group.extras:
                op, gone = MsgType.TEAM_REMOVE, self.rng.choice(sorted(group.extras))
                fields["memberIds"] = [gone]
                extras.discard(gone)
            else:
                op, name = MsgType.TEAM_RENAME, f"crew {group.team_id}.{next(renames)}"
                fields["teamName"] = name
            try:
                answer = await client.group(op, **fields)
            except (ClientError, TimeoutError) as e:
                if not _lost(e):
                    self.records.violations.append(f"group {group.team_id} {op!r} refused: {e}")
                    return
                await self._decide(client, group, extras, name)
                continue
            group.extras, group.name = extras, name
            group.ops.append((answer.seq or 0, op))

    async def _create(self, client: ImClient, owner: int, sides: list[Group], prefix: str) -> None:
        """A new group of the owner and two members without clients; a lost answer is decided
        by the owner's conversation list (the name is unique)."""
        name = f"{prefix}{next(self._ids)}"
        members = set(self.rng.sample(self.extras, 2))
        try:
            answer = await client.group(
                MsgType.TEAM_CREATE, teamName=name, memberIds=sorted(members)
            )
            team_id, ops = answer.team_id or 0, [(answer.seq or 0, int(MsgType.TEAM_CREATE))]
        except (ClientError, TimeoutError) as e:
            if not _lost(e):
                self.records.violations.append(f"create {name} refused: {e}")
                return
            made = await self._until_answered(client.conversations)
            ids = [c["teamId"] for c in made if c.get("teamName") == name]
            if len(ids) > 1:
                self.records.violations.append(f"one create of {name} made groups {ids}")
            if not ids:
                return
            team_id, ops = ids[0], []
        side = Group(team_id, owner, frozenset({owner}), members, name, ops)
        sides.append(side)
        self.records.groups.append(side)

    async def _dismiss(self, client: ImClient, side: Group) -> None:
        try:
            answer = await client.group(MsgType.TEAM_DISMISS, teamId=side.team_id)
            side.ops.append((answer.seq or 0, MsgType.TEAM_DISMISS))
        except (ClientError, TimeoutError) as e:
            if not _lost(e):
                self.records.violations.append(f"dismiss of {side.team_id} refused: {e}")
                return
            side.undecided += 1
            try:
                await self._until_answered(partial(_info, client, side.team_id))
                return  # still there: not applied
            except ClientError as e:
                if e.code not in (403, 404):
                    raise
        side.dismissed = True

    @staticmethod
    async def _until_answered(call: Callable[[], Awaitable[T]]) -> T:
        """A reading request, asked again while its connection is lost; a refusal raises."""
        while True:
            try:
                return await call()
            except (ClientError, TimeoutError) as e:
                if not _lost(e):
                    raise

    async def _decide(self, client: ImClient, group: Group, extras: set[int], name: str) -> None:
        """An operation whose answer was lost: ask the server which state the group is in, and
        check that it is either the one before or the one after."""
        group.undecided += 1
        info = await self._until_answered(partial(_info, client, group.team_id))
        members = set(info.member_ids or ())
        after = (members == group.core | extras, info.team_name == name)
        before = (members == group.members(), info.team_name == group.name)
        if all(after):
            group.extras, group.name = extras, name
        elif not all(before):
            self.records.violations.append(
                f"group {group.team_id} is {sorted(members)} {info.team_name!r}: neither"
                f" {sorted(group.members())} {group.name!r} nor what the lost operation makes"
            )
            group.extras, group.name = members - group.core, info.team_name or ""
