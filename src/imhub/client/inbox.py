"""What arrives for the application, once and in order, and how far it has been handed over
(no I/O).

Two positions per conversation: the ``Ordering`` cursor (the last ``seq`` released to the
application's queue: anything at or below it is a duplicate) and the *handed-over* cursor,
the last ``seq`` the application has finished with. Only the second is saved: after a restart
the client syncs from it, so a message the application had not finished with comes again. A
conversation's start is saved at once: it is where the server would have started it.

Each released position is a mark ``(event number, conv, seq)``; when the application reports
it has finished with the events up to a number (``take``), the marks up to it move the
handed-over cursors. A position with nothing to hand over (this client's own message, the
start of a conversation) is handed over together with the event released before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from imhub.client.actions import address
from imhub.client.events import (
    Conversations,
    Event,
    GroupChanged,
    Message,
    Notice,
    Read,
    Recalled,
)
from imhub.client.ordering import Ordering, Step
from imhub.protocol.conversation import conv_key
from imhub.protocol.messages import ImMsg, MsgType

GROUP_EVENTS = frozenset(range(MsgType.TEAM_CREATE, MsgType.TEAM_DISMISS + 1))


class Inbox:
    def __init__(self, cursors: dict[int, int], hand: Callable[[Event], int]) -> None:
        """``cursors``: the handed-over cursors saved last; ``hand(event)``: queue an event
        for the application and return its number (1, 2, … in order)."""
        self.order: Ordering[Event] = Ordering(cursors=dict(cursors))
        self.handed: dict[int, int] = dict(cursors)
        self.changed: set[int] = set()  # conversations whose handed-over cursor moved
        self._hand = hand
        self._last = 0  # number of the last event queued
        self._taken = 0  # the application has finished with every event up to this one
        self._marks: deque[tuple[int, int, int]] = deque()
        self._notices: deque[int] = deque(maxlen=10_000)

    # -- in ----------------------------------------------------------------------------------

    def deliver(self, msg: ImMsg, *, from_sync: bool, mine: bool) -> None:
        """A delivered message, recall, group event, read receipt or notice. ``from_sync``: it
        came in a sync page (which may start a conversation); ``mine``: a message this client
        sent, whose place is filled silently (the application has it from ``send_chat``)."""
        t = msg.msg_type
        if t == MsgType.READ:
            self._queue(Read(msg.chat_id, msg.team_id, msg.from_user_id or 0, msg.seq or 0))
            return
        if t == MsgType.NOTICE and msg.seq is None:
            if msg.notice_id is not None and msg.notice_id not in self._notices:
                self._notices.append(msg.notice_id)
                self._queue(
                    Notice(
                        msg.notice_id,
                        msg.from_user_id or 0,
                        msg.body_type or 0,
                        msg.body or "",
                        msg.send_time or 0,
                    )
                )
            return
        if msg.seq is None:
            return
        item: Event | None
        if t in (MsgType.CHAT, MsgType.NOTICE):
            item = None if mine else message(msg, t == MsgType.CHAT and not from_sync)
        elif t == MsgType.RECALL:
            item = Recalled(
                msg.chat_id, msg.team_id, msg.seq, msg.ref_seq or 0, msg.from_user_id or 0
            )
        elif t in GROUP_EVENTS:
            item = GroupChanged(
                t,
                msg.team_id or 0,
                msg.seq,
                msg.from_user_id or 0,
                msg.body or "",
                tuple(msg.member_ids or ()),
                msg.team_name,
            )
        else:
            return
        conv = conv_key(msg.chat_id, msg.team_id)
        started = conv not in self.order.cursors
        self._steps(conv, self.order.accept(conv, msg.seq, item, from_sync), started)

    def sync_request(self, limit: int) -> dict[str, Any]:
        """A sync from every conversation's cursor (the server adds those not named)."""
        positions = self.order.positions().items()
        convs = [{**address(c), "seq": s} for c, s in positions]
        return {"msgType": MsgType.SYNC, "convs": convs, "limit": limit}

    def page(self, page: ImMsg, mine: Callable[[ImMsg], bool]) -> bool:
        """Take a sync page; returns whether the sync is complete (else ask again). A
        complete sync starts the conversations no page started, and reports them all."""
        for m in page.messages or ():
            self.deliver(m, from_sync=True, mine=mine(m))
        for c in page.refused or ():  # not ours (any more): stop asking for it
            self.forget(conv_key(c.chat_id, c.team_id))
        if page.more:
            return False
        states = page.convs or []
        self.know((conv_key(c.chat_id, c.team_id), c.last_seq or 0) for c in states)
        for c in states:  # a membership that began later: what came before is not new
            if c.join_seq:
                conv = conv_key(c.chat_id, c.team_id)
                self._steps(conv, self.order.skip(conv, c.join_seq - 1))
        self.queue(Conversations([to_dict(c) for c in states]))
        return True

    def silent(self, conv: int, seq: int) -> None:
        """Position ``seq`` is this client's own doing (an answered send, recall or group
        change): it fills its place with nothing to hand over."""
        self._steps(conv, self.order.accept(conv, seq, None))

    def know(self, positions: Iterable[tuple[int, int]]) -> None:
        """Start conversations not started yet at the positions of a finished sync."""
        for conv, steps in self.order.know(positions):
            self._steps(conv, steps, started=True)

    def forget(self, conv: int) -> None:
        """Stop following a conversation (the server refused it: not ours)."""
        self.order.forget(conv)
        if self.handed.pop(conv, None) is not None:
            self.changed.add(conv)
        self._marks = deque(m for m in self._marks if m[1] != conv)

    def queue(self, event: Event) -> None:
        """Hand over an event that is no conversation's position (state, results)."""
        self._queue(event)

    # -- out ---------------------------------------------------------------------------------

    def take(self, upto: int) -> None:
        """The application has finished with every event up to number ``upto``."""
        if upto > self._taken:
            self._taken = upto
            self._settle()

    def _queue(self, event: Event) -> None:
        self._last = self._hand(event)

    def _steps(self, conv: int, steps: list[Step[Event]], started: bool = False) -> None:
        if started and steps and conv in self.order.cursors:
            # A start is saved at once, whatever the application is doing: after a restart
            # the sync must begin here, not at the server's read position, which may have
            # passed messages this client has not handed over.
            start = steps.pop(0)[0]
            if start < self.handed.get(conv, start + 1):
                self.handed[conv] = start
                self.changed.add(conv)
        for seq, item in steps:
            if item is not None:
                self._queue(item)
            self._marks.append((self._last, conv, seq))
        self._settle()

    def _settle(self) -> None:
        while self._marks and self._marks[0][0] <= self._taken:
            _, conv, seq = self._marks.popleft()
            if seq > self.handed.get(conv, -1):
                self.handed[conv] = seq
                self.changed.add(conv)


def message(msg: ImMsg, as_chat: bool) -> Message:
    """A chat message as the application gets it (``as_chat``: delivered as chat, because
    this connection shows its conversation)."""
    return Message(
        chat_id=msg.chat_id,
        team_id=msg.team_id,
        seq=msg.seq or 0,
        msg_id_server=msg.msg_id_server or 0,
        msg_id_client=msg.msg_id_client or "",
        from_user_id=msg.from_user_id or 0,
        to_user_id=msg.to_user_id,
        body_type=msg.body_type or 0,
        body=msg.body or "",
        send_time=msg.send_time or 0,
        recalled=bool(msg.recalled),
        shown_as_chat=as_chat,
    )


def to_dict(value: Any) -> dict[str, Any]:
    """A protocol struct as the plain dict the application gets (camelCase keys)."""
    return dict(msgspec.to_builtins(value))
