"""What a node says to the others, and the interface of the bus that carries it.

News is encoded with msgspec (MessagePack) and prefixed with the sending node's id, so a node
drops its own publications without decoding them. A stored row travels as the row, not as the
bytes of one connection's form: whether it arrives as ``chat`` or ``notice`` depends on the
receiving connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import msgspec

from imhub.storage.conversations import MsgRow
from imhub.storage.notices import NoticeRow

NODE_ID_BYTES = 16  # a node id is 16 hex characters, the first bytes of every publication


# A message whose body is larger travels as its place only (``RowNews.thin``): the nodes that
# deliver it read it from storage. Redis cuts a subscriber with 32 MB waiting for it (its
# default client-output-buffer-limit for pub/sub): a few messages of --max-frame's 8 MiB
# would otherwise cut every node's bus at once.
NEWS_BODY_MAX = 16 * 1024


class RowNews(msgspec.Struct, tag="r", array_like=True, gc=False):
    """A message or event was stored. ``live`` is its live form for events (a group change
    carries the group's name and the affected members), else empty. ``thin``: the row's body
    was left out (over ``NEWS_BODY_MAX``): read the row from storage."""

    row: MsgRow
    live: bytes = b""
    affected: tuple[int, ...] = ()  # group events: the members added or removed
    users: tuple[int, ...] = ()  # one-to-one: the two users (a system message names neither)
    thin: bool = False


class SendNews(msgspec.Struct, tag="s", array_like=True, gc=False):
    """A message outside any conversation's sequence (a read receipt) for ``user_id``."""

    user_id: int
    payload: bytes


class NoticeNews(msgspec.Struct, tag="n", array_like=True, gc=False):
    """A notice pending for ``user_id``: a node where the user is online claims and pushes it."""

    user_id: int
    notice: NoticeRow


class Control(msgspec.Struct, tag="c", array_like=True, gc=False):
    """Broadcast: ``deleted`` (a user was deleted: end their sessions, forget them), or
    ``resync`` (a node was cut off from the bus: everyone catches up from storage)."""

    kind: str
    user_id: int = 0


News = RowNews | SendNews | NoticeNews | Control

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(News)


def encode(node_id: bytes, news: News) -> bytes:
    return node_id + _encoder.encode(news)


def decode(data: bytes) -> News:
    return _decoder.decode(memoryview(data)[NODE_ID_BYTES:])  # type: ignore[no-any-return]


def user_channel(prefix: str, user_id: int) -> str:
    return f"{prefix}u:{user_id}"


def team_channel(prefix: str, team_id: int) -> str:
    return f"{prefix}t:{team_id}"


class Bus(Protocol):
    """A node's link to the others. ``publish`` never waits (news is queued and sent once per
    loop tick, pipelined); ``subscribe`` returns once the subscription is confirmed, or at once
    while the bus is down (the node catches up from storage when it returns)."""

    node_id: bytes
    prefix: str

    @property
    def clustered(self) -> bool:
        """False for the one-process default: nothing to publish, nobody to hear."""

    @property
    def up(self) -> bool:
        """Connected now."""

    def start(
        self,
        on_news: Callable[[bytes], None],
        on_resumed: Callable[[], Awaitable[None]],
        on_node_gone: Callable[[], Awaitable[None]],
    ) -> Awaitable[None]:
        """Connect and listen: ``on_news`` gets each payload, ``on_resumed`` runs after an
        outage of the bus, ``on_node_gone`` when another node stopped counting as alive."""

    async def close(self) -> None: ...

    def publish(self, channel: str, data: bytes) -> None: ...

    async def subscribe(self, channels: Iterable[str]) -> None: ...

    def unsubscribe(self, channels: Iterable[str]) -> None: ...


class LocalBus:
    """The bus of a server that is one process: nothing is published or heard."""

    node_id = b"0" * NODE_ID_BYTES
    prefix = ""
    clustered = False
    up = True

    async def start(
        self,
        on_news: Callable[[bytes], None],
        on_resumed: Callable[[], Awaitable[None]],
        on_node_gone: Callable[[], Awaitable[None]],
    ) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, channel: str, data: bytes) -> None:
        return None

    async def subscribe(self, channels: Iterable[str]) -> None:
        return None

    def unsubscribe(self, channels: Iterable[str]) -> None:
        return None
