"""This node's side of a cluster: what it tells the others after each commit, what it does
with their news, and which channels it listens to.

After a batch commits, the node delivers to its own connections exactly as a lone server does
(its users never wait for Redis), then publishes: a one-to-one row on the channel of each of
the two users, a group row once on the group's channel (one copy per node that listens, never
one per member), receipts on the channel of each user concerned. A node listens to the
channel of each user it has a connection of, subscribed before that user's login snapshot
is taken, and to the channel of each group one of those users is a member of; a group first
listened to after the snapshot is caught up from storage. Everything delivered goes through
the connection's floors, so a copy that overtook another is held until the gap is filled
(``service.gapfill``).

The chat/notice rule across nodes: a node that writes a message as ``chat`` to a connection
showing its conversation moves that reader's position through its own writer, as the storing
node does for its own connections, and the sender learns it from the receipt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from imhub.cluster.bus import (
    NEWS_BODY_MAX,
    Bus,
    Control,
    NoticeNews,
    RowNews,
    SendNews,
    decode,
    encode,
    team_channel,
    user_channel,
)
from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.delivery import notice_message
from imhub.service.gapfill import GapFiller
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage.catchup import ClaimIn, ClaimNotice, ClaimPending
from imhub.storage.conversations import CHAT_MSG, MsgRow
from imhub.storage.notices import NoticeRow
from imhub.storage.reads import ConvState, MoveReads, ReadIn
from imhub.storage.writer import BatchWriter

if TYPE_CHECKING:
    from imhub.service.delivery import Delivery


class PresenceWriter(Protocol):
    """Where a cluster keeps who is connected (``cluster.presence.RedisPresence``)."""

    def put(self, user_id: int, conn: int, client_type: int, entered: list[int]) -> None: ...

    def remove(self, user_id: int, conn: int) -> None: ...


log = logging.getLogger(__name__)

DELETED_REASON = "user deleted"
_JOINS = (MsgType.TEAM_CREATE, MsgType.TEAM_ADD)
_LEAVES = (MsgType.TEAM_REMOVE, MsgType.TEAM_LEAVE)


class CrossNode:
    def __init__(
        self,
        bus: Bus,
        registry: SessionRegistry,
        writer: BatchWriter,
        move_reads: MoveReads,
        filler: GapFiller,
        forget_user: Callable[[int], None],
        caches_stale: Callable[[], None],
        presence: PresenceWriter | None = None,
    ) -> None:
        self.bus = bus
        self._prefix = bus.prefix
        self._node = bus.node_id
        self._registry = registry
        self._writer = writer
        self._move = move_reads
        self._claim = ClaimNotice()
        self._pending = ClaimPending()
        self.filler = filler
        self._forget_user = forget_user  # a user deleted through another node
        self._caches_stale = caches_stale  # news may have been missed: reload what is cached
        self._presence = presence
        registry.on_change = self.entered
        self.delivery: Delivery | None = None  # set by app.py (they need each other)
        self.receipt: Callable[[int, int, int, set[int]], None] | None = None
        self._user_refs: dict[int, int] = {}  # local user -> connections subscribed for them
        self._subscribed: dict[Session, int] = {}  # the user each session subscribed for
        self._user_teams: dict[int, set[int]] = {}  # local user -> groups they are in
        self._team_users: dict[int, set[int]] = {}  # group -> local users in it
        self._tasks: set[asyncio.Task[None]] = set()
        # The read position each catch-up told a local user of, per chat: a later catch-up
        # (several come at once after an outage: one per node's resync) repeats none.
        self._receipted: dict[int, dict[int, int]] = {}
        self._catching: asyncio.Task[None] | None = None
        self._again = False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- publishing (right after the commit, once the local connections have theirs) ---

    def row(
        self, row: MsgRow, users: Iterable[int], live: bytes | None, affected: tuple[int, ...]
    ) -> None:
        """A stored row was delivered here to ``users``; tell the nodes concerned (``live``:
        an event's live form; ``affected``: the members a group change added or removed)."""
        prefix = self._prefix
        thin = len(row.body) > NEWS_BODY_MAX // 4 and len(row.body.encode()) > NEWS_BODY_MAX
        if thin:
            row = msgspec.structs.replace(row, body="")
        if row.team_id:
            data = encode(self._node, RowNews(row, live or b"", affected, (), thin))
            self.bus.publish(team_channel(prefix, row.team_id), data)
            for user_id in affected:  # members whose nodes may not listen to the group yet
                self.bus.publish(user_channel(prefix, user_id), data)
            if row.msg_type != CHAT_MSG:
                self._team_event(row, affected)
        else:
            audience = tuple(users)
            data = encode(self._node, RowNews(row, live or b"", (), audience, thin))
            for user_id in audience:
                self.bus.publish(user_channel(prefix, user_id), data)

    def send(self, payload: bytes, users: Iterable[int]) -> None:
        for user_id in users:
            data = encode(self._node, SendNews(user_id, payload))
            self.bus.publish(user_channel(self._prefix, user_id), data)

    def notice_pending(self, notice: NoticeRow, users: Iterable[int]) -> None:
        """Targets not online here: a node where one is online claims it and writes it."""
        for user_id in users:
            data = encode(self._node, NoticeNews(user_id, notice))
            self.bus.publish(user_channel(self._prefix, user_id), data)

    def user_deleted(self, user_id: int) -> None:
        self.bus.publish(self._prefix + "ctl", encode(self._node, Control("deleted", user_id)))

    # --- a connection's life ---

    def watch(self, session: Session) -> None:
        session.on_gap = self.filler.gap

    async def before_login(self, session: Session, user_id: int) -> None:
        """Listen to the user's channel before their snapshot is taken: whatever is stored
        after that point reaches this node."""
        if session in self._subscribed:
            return
        self._subscribed[session] = user_id
        refs = self._user_refs.get(user_id, 0)
        self._user_refs[user_id] = refs + 1
        if not refs:
            await self.bus.subscribe([user_channel(self._prefix, user_id)])

    async def logged_in(self, session: Session, convs: list[ConvState]) -> None:
        """The session is registered with floors from its snapshot: listen to its groups;
        those heard only from now on are caught up from storage."""
        assert session.user_id is not None
        self.entered(session)
        teams = [c.team_id for c in convs if c.team_id and not c.left]
        fresh = self._join_teams(session.user_id, teams)
        if fresh:
            await self.bus.subscribe([team_channel(self._prefix, t) for t in fresh])
            newest = await self.filler.newest([-t for t in fresh])
            for conv, last_seq in newest.items():
                for s in self._registry.sessions_of(session.user_id):
                    self.filler.upto(s, conv, last_seq)

    def entered(self, session: Session) -> None:
        """Presence: the connection is online, showing these conversations."""
        if self._presence is not None and session.user_id is not None and not session.closed:
            entered = sorted(session.entered)
            self._presence.put(session.user_id, session.conn_id, session.client_type, entered)

    def closed(self, session: Session) -> None:
        user_id = self._subscribed.pop(session, None)
        if user_id is None:
            return
        if self._presence is not None:
            self._presence.remove(user_id, session.conn_id)
        refs = self._user_refs[user_id] - 1
        if refs:
            self._user_refs[user_id] = refs
            return
        del self._user_refs[user_id]
        self._receipted.pop(user_id, None)
        self.bus.unsubscribe([user_channel(self._prefix, user_id)])
        self._leave_teams(user_id, self._user_teams.pop(user_id, set()))

    def _join_teams(self, user_id: int, teams: Iterable[int]) -> list[int]:
        """Count ``user_id`` in the groups; the groups nobody here was in before."""
        mine = self._user_teams.setdefault(user_id, set())
        fresh = []
        for team_id in teams:
            mine.add(team_id)
            users = self._team_users.setdefault(team_id, set())
            if not users:
                fresh.append(team_id)
            users.add(user_id)
        return fresh

    def _leave_teams(self, user_id: int, teams: Iterable[int]) -> None:
        gone = []
        for team_id in teams:
            self._user_teams.get(user_id, set()).discard(team_id)
            users = self._team_users.get(team_id)
            if users is not None:
                users.discard(user_id)
                if not users:
                    del self._team_users[team_id]
                    gone.append(team_id)
        if gone:
            self.bus.unsubscribe([team_channel(self._prefix, t) for t in gone])

    def _team_event(self, row: MsgRow, affected: tuple[int, ...]) -> None:
        """Keep the index of local members in step with a group change delivered here."""
        local = [u for u in affected if u in self._user_refs]
        if row.msg_type in _JOINS and local:
            for user_id in local:
                self._join_teams(user_id, (row.team_id,))
            # Subscribed already if others here are members; either way, what the group
            # stored between the join and this news was not delivered to the joiners here.
            self._spawn(self._listen_late(row.team_id, local))
        elif row.msg_type in _LEAVES:
            for user_id in local:
                self._leave_teams(user_id, (row.team_id,))
        elif row.msg_type == MsgType.TEAM_DISMISS:
            for user_id in list(self._team_users.get(row.team_id, ())):
                self._leave_teams(user_id, (row.team_id,))

    async def _listen_late(self, team_id: int, users: list[int]) -> None:
        await self.bus.subscribe([team_channel(self._prefix, team_id)])
        newest = await self.filler.newest([-team_id])
        for user_id in users:
            for s in self._registry.sessions_of(user_id):
                self.filler.upto(s, -team_id, newest.get(-team_id, 0))

    # --- news from the other nodes ---

    def on_news(self, data: bytes) -> None:
        news = decode(data)
        if isinstance(news, RowNews):
            self._row_news(news)
        elif isinstance(news, SendNews):
            for s in self._registry.sessions_of(news.user_id):
                s.send(news.payload)
        elif isinstance(news, NoticeNews):
            if self._registry.sessions_of(news.user_id):
                claim = ClaimIn(news.notice.notice_id, news.user_id)
                self._writer.submit(self._claim, claim, partial(self._claimed, news))
        elif news.kind == "deleted":
            self._deleted(news.user_id)
        elif news.kind == "resync":
            self._caches_stale()  # what this node cached may have changed unheard of
            self._spawn(self.catch_up())

    def _row_news(self, news: RowNews) -> None:
        row = news.row
        assert self.delivery is not None
        if row.team_id:
            users = set(self._team_users.get(row.team_id, ()))
            users.update(u for u in news.affected if u in self._user_refs)
        else:
            users = {u for u in news.users if u in self._user_refs}
        if not users:
            return
        if news.thin:  # too large for the bus: each connection reads it from storage
            for user_id in users:
                for s in self._registry.sessions_of(user_id):
                    self.filler.upto(s, row.conv, row.seq)
            return
        held_back = self._ending(row, news.affected)
        self.delivery.row(row, users, extra=news.live or None, publish=False)
        for session, upto in held_back:
            self.filler.upto(session, row.conv, upto)
        self.read_at_once(row, users)
        if row.team_id and row.msg_type != CHAT_MSG:
            self._team_event(row, news.affected)

    def _ending(self, row: MsgRow, affected: tuple[int, ...]) -> list[tuple[Session, int]]:
        """A removal from a group: copies waiting behind it for the members it removes were
        delivered by nodes that had not heard of it yet. Taken out before the removal goes out
        (which would release them), and the range filled from storage afterwards instead,
        which writes only what the member may see (a re-add among them included)."""
        if row.msg_type not in _LEAVES:
            return []
        out = []
        conv = row.conv
        for user_id in affected:
            for s in self._registry.sessions_of(user_id):
                waiting = s.ahead.get(conv) if s.ahead is not None else None
                # (Not its own posts, markers without a copy: they are of a later membership.)
                past = [q for q, p in (waiting or {}).items() if q > row.seq and p is not None]
                if past:
                    s.discard(conv, past)
                    out.append((s, max(past)))
        return out

    def read_at_once(self, row: MsgRow, users: Iterable[int]) -> None:
        """Recipients with a connection here showing the conversation have read ``row``."""
        if row.msg_type != CHAT_MSG:
            return
        conv = row.conv
        for user_id in users:
            if user_id == row.from_user_id:
                continue
            if any(conv in s.entered for s in self._registry.sessions_of(user_id)):
                item = ReadIn(user_id, conv, row.seq, stored=True)
                self._writer.submit(self._move, item, partial(self._read, row, user_id))

    def _read(self, row: MsgRow, reader: int, result: tuple[int, int] | ImError) -> None:
        if isinstance(result, ImError):
            return
        was, seq = result
        if seq != was and row.chat_id and self.receipt is not None:
            self.receipt(row.chat_id, reader, seq, {row.from_user_id, reader})

    def _claimed(self, news: NoticeNews, result: bool | ImError) -> None:
        if result is True:  # this node won: its connections, and the user's elsewhere
            payload = codec.encode(notice_message(news.notice))
            for s in self._registry.sessions_of(news.user_id):
                s.send(payload)
            self.send(payload, (news.user_id,))

    def _deleted(self, user_id: int) -> None:
        self._forget_user(user_id)
        for session in list(self._registry.sessions_of(user_id)):
            session.end(ErrorCode.UNAUTHORIZED, DELETED_REASON)

    async def resumed(self) -> None:
        """The bus is back after an outage: news may have been lost both ways."""
        self._caches_stale()
        self.bus.publish(self._prefix + "ctl", encode(self._node, Control("resync")))
        await self.catch_up()

    async def catch_up(self) -> None:
        """One catch-up at a time; those asked for meanwhile (every node's ``resync`` comes
        at once) make one more after it."""
        if self._catching is not None:
            self._again = True
            return
        self._catching = asyncio.current_task()
        try:
            self._again = True
            while self._again:
                self._again = False
                await self._catch_up()
        finally:
            self._catching = None

    async def _catch_up(self) -> None:
        """After a gap in the bus (Redis back, a ``resync``, a node gone): whatever this node
        learns only from news is derived again from storage, for every local user, a few
        queries per 500 users: who was deleted (their sessions end as at a live deletion),
        which groups they are in (the channels listened to), the notices still pending for
        them (claimed and written, as a claim after news does), the other users' read
        positions (a receipt each), and each conversation's newest seq (gaps filled)."""
        users = sorted(u for u in self._registry.user_ids() if self._live(u))
        try:
            for start in range(0, len(users), 500):
                chunk = users[start : start + 500]
                deleted, convs = await self.filler.survey(chunk)
                for user_id in deleted:
                    self._deleted(user_id)
                for user_id, states in convs.items():
                    self._caught_up(user_id, states)
        except Exception:
            log.exception("catching up from storage failed; clients' syncs will")

    def _live(self, user_id: int) -> bool:
        return any(not s.closed for s in self._registry.sessions_of(user_id))

    def _caught_up(self, user_id: int, states: list[ConvState]) -> None:
        sessions = [s for s in self._registry.sessions_of(user_id) if not s.closed]
        if not sessions:
            return
        # Groups joined or left while news was lost: the index and the channels follow.
        now = {c.team_id for c in states if c.team_id and not c.left}
        self._leave_teams(user_id, self._user_teams.get(user_id, set()) - now)
        joined = now - self._user_teams.get(user_id, set())
        self._join_teams(user_id, joined)
        for team_id in joined:
            self._spawn(self._listen_late(team_id, [user_id]))
        self._writer.submit(self._pending, user_id, partial(self._notices, user_id))
        told = self._receipted.setdefault(user_id, {})
        for c in states:
            if c.chat_id and c.peer_read_seq > told.get(c.chat_id, 0):
                told[c.chat_id] = c.peer_read_seq
                receipt = ImMsg(
                    msg_type=MsgType.READ,
                    chat_id=c.chat_id,
                    from_user_id=c.peer_user_id,
                    seq=c.peer_read_seq,
                )
                payload = codec.encode(receipt)
                for s in sessions:
                    s.send(payload)
        self.filler.catch_up(sessions, states)

    def _notices(self, user_id: int, result: list[NoticeRow] | ImError) -> None:
        if isinstance(result, ImError):
            return
        for notice in result:  # this node claimed them: its connections, and elsewhere
            payload = codec.encode(notice_message(notice))
            for s in self._registry.sessions_of(user_id):
                s.send(payload)
            self.send(payload, (user_id,))
