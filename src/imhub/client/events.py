"""What the client hands to the application."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class State(Enum):
    IDLE = "idle"
    CONNECTING = "connecting"  # first connect, retried with backoff
    ONLINE = "online"
    RECONNECTING = "reconnecting"  # after a drop, retried with backoff
    CLOSED = "closed"  # logged out, closed, or gave up: no more reconnects


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message, once, in its conversation's order."""

    chat_id: int | None  # one-to-one
    team_id: int | None  # group
    seq: int
    msg_id_server: int
    msg_id_client: str
    from_user_id: int
    to_user_id: int | None
    body_type: int
    body: str
    send_time: int
    recalled: bool = False
    shown_as_chat: bool = False  # True: delivered as ``chat`` (this connection shows the chat)


@dataclass(frozen=True, slots=True)
class Recalled:
    chat_id: int | None
    team_id: int | None
    seq: int  # the recall's own position
    ref_seq: int  # the recalled message
    from_user_id: int


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group event: created (16), added (17), removed (18), left (19), renamed (20),
    dissolved (21); ``member_ids`` and ``team_name`` are present on live events."""

    op: int
    team_id: int
    seq: int
    from_user_id: int
    body: str
    member_ids: tuple[int, ...] = ()
    team_name: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """Someone (the other user, or you on another device) has read up to ``seq``."""

    chat_id: int | None
    team_id: int | None
    reader: int
    seq: int


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: int
    from_user_id: int
    body_type: int
    body: str
    send_time: int


@dataclass(frozen=True, slots=True)
class Conversations:
    """The user's conversations with positions and unread counts, after each (re)sync."""

    convs: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Sent:
    """A message this client sent, as the server stored it: the result of ``send_chat``, and an
    event for messages restored from the state file after a restart."""

    chat_id: int | None
    team_id: int | None
    seq: int
    msg_id_server: int
    msg_id_client: str
    send_time: int


@dataclass(frozen=True, slots=True)
class SendFailed:
    """A message restored from the state file after a restart was refused by the server.
    (A live ``send_chat`` raises instead.)"""

    msg_id_client: str
    code: int
    reason: str


Event = (
    StateChanged
    | Message
    | Recalled
    | GroupChanged
    | Read
    | Notice
    | Conversations
    | Sent
    | SendFailed
)
