"""Sessions: one per connection, whatever its transport, and the registry of who is online.

A user may be online on several connections at once (phone, PC, browser); the registry maps
each user to all of them. The gateway creates a session per connection and removes it when
the connection closes; services only see ``Session.send`` and ``Session.close``.
"""

from __future__ import annotations

from typing import Protocol

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import ImMsg

MAX_HELD = 10_000  # live messages held for one connection while its login backlog is written


class Outlet(Protocol):
    """The transport side of a session, implemented by the gateway for TCP and WebSocket."""

    def send(self, payload: bytes) -> None:
        """Queue one encoded JSON message; framing is the outlet's business."""

    def close(self) -> None:
        """Flush what is queued, then close."""


class Session:
    __slots__ = (
        "backlog_upto",
        "client_type",
        "closed",
        "entered",
        "held",
        "last_seen",
        "opened",
        "outlet",
        "user_id",
    )

    def __init__(self, outlet: Outlet, now: float) -> None:
        self.outlet = outlet
        self.user_id: int | None = None
        self.client_type = 0
        self.entered: set[int] = set()  # chat ids this connection is showing (chat_enter)
        self.opened = now
        self.last_seen = now
        self.closed = False
        # Messages up to this id reach the session from storage at login, later ones live.
        self.backlog_upto = 0
        # While the login backlog is being written, live messages wait here to keep order.
        self.held: list[bytes] | None = None

    def send(self, payload: bytes) -> None:
        if self.closed:
            return
        if self.held is None:
            self.outlet.send(payload)
        elif len(self.held) < MAX_HELD:
            self.held.append(payload)
        else:
            # Live traffic outran the login backlog: drop the connection rather than buffer
            # without bound; everything is stored, and the next login starts from storage.
            self.close()

    def reply(self, msg: ImMsg | bytes) -> None:
        """Send an answer to this connection's own request, ahead of held live messages."""
        if not self.closed:
            self.outlet.send(msg if isinstance(msg, bytes) else codec.encode(msg))

    def error(self, code: ErrorCode, reason: str, msg_id_client: str | None = None) -> None:
        self.reply(codec.error_msg(code, reason, msg_id_client))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outlet.close()

    def release_held(self) -> None:
        held, self.held = self.held, None
        for payload in held or ():
            self.send(payload)


class SessionRegistry:
    """Who is online, on which connections, and which chats those connections show."""

    def __init__(self) -> None:
        self._by_user: dict[int, list[Session]] = {}

    def add(self, session: Session) -> None:
        assert session.user_id is not None
        self._by_user.setdefault(session.user_id, []).append(session)

    def remove(self, session: Session) -> None:
        if session.user_id is None:
            return
        sessions = self._by_user.get(session.user_id)
        if sessions and session in sessions:
            sessions.remove(session)
            if not sessions:
                del self._by_user[session.user_id]

    def sessions_of(self, user_id: int) -> list[Session]:
        return self._by_user.get(user_id, [])

    def online(self, user_id: int) -> bool:
        return user_id in self._by_user

    def in_chat(self, user_id: int, chat_id: int) -> bool:
        return any(chat_id in s.entered for s in self._by_user.get(user_id, ()))

    @property
    def user_count(self) -> int:
        return len(self._by_user)
