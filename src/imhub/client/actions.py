"""The session core's vocabulary: what it asks of its driver (actions), how it is configured,
and the records it keeps per request and per unanswered send. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from imhub.client.errors import ClientError
from imhub.client.events import Event
from imhub.client.store import Saved
from imhub.protocol.conversation import conv_ids
from imhub.protocol.messages import ImMsg


@dataclass(frozen=True, slots=True)
class Write:
    """Write this message (one frame) on the current connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Hand:
    """Hand this event to the application; ``number`` counts events from 1."""

    event: Event
    number: int


@dataclass(frozen=True, slots=True)
class Resolve:
    """The call named ``key`` (a request id, or a send's ``msgIdClient``) succeeded."""

    key: str
    value: Any  # ImMsg for a request, Sent for a send


@dataclass(frozen=True, slots=True)
class Fail:
    key: str
    error: Exception


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the current connection now (the session has already given it up)."""

    reason: str


Action = Write | Hand | Resolve | Fail | Drop


class Phase(Enum):
    OFFLINE = "offline"
    LOGIN = "login"
    ENTER = "enter"
    SYNC = "sync"
    ONLINE = "online"


Handler = Callable[[ImMsg | None, ClientError | None], None]


@dataclass(slots=True)
class Call:
    deadline: float
    handler: Handler | None  # None: the application's call, resolved through an action
    what: str


@dataclass(slots=True)
class Pending:
    payload: dict[str, Any]
    awaited: bool  # a send_chat waits for it (False: restored after a restart)
    conn: int = 0  # the connection it was last written on


@dataclass
class Options:
    client_type: int
    heartbeat_interval: float = 25.0
    heartbeat_timeout: float = 10.0
    request_timeout: float = 15.0
    sync_page: int = 200
    renewable: bool = False  # the token source can give a fresh token
    keep_outbox: bool = False  # a state file keeps the outbox across a close
    saved: Saved = field(default_factory=Saved)


def address(conv: int) -> dict[str, int]:
    """The wire fields that name a conversation."""
    chat_id, team_id = conv_ids(conv)
    return {"teamId": team_id} if team_id else {"chatId": chat_id}
