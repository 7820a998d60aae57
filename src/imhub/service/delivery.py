"""How stored messages look on the wire, and writing them to every connection that gets them.

A message is encoded once per form (``chat`` for connections showing its conversation,
``notice`` for the others; events have one form), however many connections receive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from imhub.protocol import codec
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.sessions import Session, SessionRegistry
from imhub.storage.conversations import CHAT_MSG, MsgRow
from imhub.storage.notices import NoticeRow


def message(row: MsgRow, msg_type: int | None = None) -> ImMsg:
    """A stored message or event as the protocol shows it; a recalled message has no body."""
    return ImMsg(
        msg_type=row.msg_type if msg_type is None else msg_type,
        chat_id=row.chat_id or None,
        team_id=row.team_id or None,
        seq=row.seq,
        from_user_id=row.from_user_id,
        to_user_id=row.to_user_id or None,
        from_client_type=row.client_type,
        # Events (recalls, group changes) are the server's: identified by conversation and seq,
        # they carry no client id a client could mistake for one of its own.
        msg_id_client=row.msg_id_client if row.msg_type == CHAT_MSG else None,
        msg_id_server=row.msg_id_server,
        body_type=row.body_type,
        body="" if row.recalled else row.body,
        send_time=row.send_time,
        time=row.voice_time or None,
        ref_seq=row.ref_seq or None,
        recalled=row.recalled or None,
    )


def backlog_message(row: MsgRow) -> ImMsg:
    """A message written from storage outside a sync page: chats arrive as notices."""
    return message(row, MsgType.NOTICE if row.msg_type == CHAT_MSG else None)


def notice_message(row: NoticeRow) -> ImMsg:
    """A notice from a backend (``fromUserId`` 0) or a user; the same bytes for every target."""
    return ImMsg(
        msg_type=MsgType.NOTICE,
        notice_id=row.notice_id,
        from_user_id=row.from_user_id,
        body_type=row.body_type,
        body=row.body,
        send_time=row.send_time,
    )


class Fanout(Protocol):
    """Where a delivery goes beyond this process (``service.crossnode.CrossNode``)."""

    def row(
        self, row: MsgRow, users: Iterable[int], live: bytes | None, affected: tuple[int, ...]
    ) -> None: ...

    def send(self, payload: bytes, users: Iterable[int]) -> None: ...


class Delivery:
    def __init__(self, registry: SessionRegistry, fanout: Fanout | None = None) -> None:
        self._registry = registry
        self.fanout = fanout  # None: one process, nobody else to tell

    def row(
        self,
        row: MsgRow,
        users: Iterable[int],
        skip: Session | None = None,
        extra: ImMsg | bytes | None = None,
        publish: bool = True,
    ) -> None:
        """Write a stored message or event to every connection of ``users`` here, then (in a
        cluster, unless ``publish`` is False: news from another node) tell the other nodes.

        ``extra``, for events only, replaces the stored form (adds live-only fields)."""
        conv = row.conv
        as_chat: bytes | None = None
        as_notice: bytes | None = None
        if publish and self.fanout is not None and not isinstance(users, (set, frozenset)):
            users = list(users)
        if isinstance(extra, ImMsg):
            affected = tuple(extra.member_ids or ())
            as_chat = codec.encode(extra)
        else:
            affected = ()
            as_chat = extra
        # The loop below runs once per member of a group: every lookup it can do once is
        # hoisted out of it (a fan-out to 1,000 members costs about a microsecond each).
        seq = row.seq
        is_chat = row.msg_type == CHAT_MSG
        by_user = self._registry.by_user
        for user_id in users:
            sessions = by_user.get(user_id)
            if sessions is None:
                continue
            for s in sessions:
                if s is skip:
                    if s.on_gap is not None:  # a cluster's floors pass the sender's own
                        s.deliver(conv, seq, None)
                    continue
                if not is_chat:
                    as_chat = as_chat or codec.encode(message(row))
                    s.deliver(conv, seq, as_chat)
                elif conv in s.entered:
                    as_chat = as_chat or codec.encode(message(row, MsgType.CHAT))
                    s.deliver(conv, seq, as_chat)
                else:
                    as_notice = as_notice or codec.encode(message(row, MsgType.NOTICE))
                    s.deliver(conv, seq, as_notice)
        if publish and self.fanout is not None:
            live = as_chat if row.msg_type != CHAT_MSG and extra is not None else None
            self.fanout.row(row, users, live, affected)

    def send(
        self, msg: ImMsg, users: Iterable[int], skip: Session | None = None, publish: bool = True
    ) -> None:
        """Write a message outside any conversation's sequence (notices, read receipts)."""
        payload: bytes | None = None
        if publish and self.fanout is not None and not isinstance(users, (set, frozenset, list)):
            users = list(users)
        for user_id in users:
            for s in self._registry.sessions_of(user_id):
                if s is not skip:
                    payload = payload or codec.encode(msg)
                    s.send(payload)
        if publish and self.fanout is not None:
            self.fanout.send(payload or codec.encode(msg), users)
