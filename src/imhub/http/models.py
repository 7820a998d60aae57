"""The HTTP API's request and response bodies, query strings and path parameters, as typed
structs: the server decodes and encodes with them, and the OpenAPI document is generated from
them. Every integer has the range of where it goes (``Id``, ``SmallInt``), as on the wire."""

from __future__ import annotations

from typing import Annotated

import msgspec

from imhub.protocol.messages import BodyType, Conv, Id, ImMsg, SmallInt, UnreadChat
from imhub.service.auth import DEFAULT_TTL

# A token's lifetime: its expiry stays a number every JWT library reads (about 68 years).
Seconds = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
UserId = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
Mobile = Annotated[str, msgspec.Meta(max_length=20)]
HeadImg = Annotated[str, msgspec.Meta(max_length=125)]
MsgIdClient = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
ConvCursor = Annotated[str, msgspec.Meta(pattern="^(chat|team):[0-9]{1,16}$")]

DEFAULT_LIMIT = 100


class Struct(msgspec.Struct, rename="camel", omit_defaults=True):
    """Bodies in the protocol's camelCase; absent values are left out of answers."""


class ErrorBody(Struct):
    """Every error: ``code`` is the HTTP status, ``reason`` says what was wrong, for people."""

    code: int
    reason: str


# Paths and paging


class UserPath(Struct):
    user_id: UserId


class TeamPath(Struct):
    team_id: Id


class Page(Struct):
    """Paging by id: ``after`` is the ``next`` of the previous page (0: from the first)."""

    limit: Limit = DEFAULT_LIMIT
    after: Id = 0


class ConvPageQuery(Struct):
    """Paging of conversations: ``after`` is the ``next`` of the previous page."""

    limit: Limit = DEFAULT_LIMIT
    after: ConvCursor | None = None


# Users and tokens


class UserRequest(Struct):
    username: Username
    mobile: Mobile = ""
    head_img: HeadImg = ""


class UserPatch(Struct):
    """The fields to change; those left out stay as they are."""

    username: Username | msgspec.UnsetType = msgspec.UNSET
    mobile: Mobile | msgspec.UnsetType = msgspec.UNSET
    head_img: HeadImg | msgspec.UnsetType = msgspec.UNSET


class User(Struct, omit_defaults=False):
    user_id: Id
    username: str
    mobile: str
    head_img: str


class UserPage(Struct):
    users: list[User]
    next: Id | None = None  # absent on the last page


class TokenRequest(Struct):
    user_id: Id
    ttl: Seconds = DEFAULT_TTL


class TokenAnswer(Struct):
    token: str


# Presence


class Presence(Struct, omit_defaults=False):
    user_id: Id
    connections: SmallInt  # open, logged-in connections (0: offline)
    client_types: list[SmallInt]  # the protocol's fromClientType of each, distinct


class PresencePage(Struct):
    users: list[Presence]
    next: Id | None = None


# Notices and system messages


class NoticeRequest(Struct):
    # 1 to 10,000 entries as sent (service.notices.MAX_TARGETS), repeats included.
    to_user_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000)]
    body: str
    body_type: SmallInt = BodyType.NOTIFICATION
    from_user_id: Id = 0


class BroadcastRequest(Struct):
    """A notice to a group's members or to everyone online."""

    body: str
    body_type: SmallInt = BodyType.NOTIFICATION
    from_user_id: Id = 0


class NoticeAnswer(Struct, omit_defaults=False):
    notice_id: Id
    send_time: Id
    delivered: list[Id]  # online: written to their connections now
    pending: list[Id]  # offline: delivered at their next login


class SystemMessageRequest(Struct):
    """A message from the system (``fromUserId`` 0) into a one-to-one chat or a group:
    give exactly one of ``chatId`` and ``teamId``."""

    body: str
    chat_id: Id | None = None
    team_id: Id | None = None
    body_type: SmallInt = BodyType.TIPS
    msg_id_client: MsgIdClient | None = None  # makes a retry safe: stored once


class SystemMessageAnswer(Struct):
    seq: Id
    msg_id_server: Id
    msg_id_client: str
    send_time: Id
    duplicate: bool  # stored before under this msgIdClient: nothing new was stored or sent
    chat_id: Id | None = None
    team_id: Id | None = None


# A user's conversations


class ConvPageAnswer(Struct):
    conversations: list[Conv]
    total_unread: SmallInt  # over all the user's conversations
    next: str | None = None


class UnreadAnswer(Struct):
    unread: list[UnreadChat]  # the conversations with unread messages, on this page
    total_unread: SmallInt
    next: str | None = None


class HistoryQuery(Struct):
    """Give exactly one of ``chatId`` and ``teamId``. Page back with ``beforeSeq`` = the
    first ``seq`` of the previous page."""

    chat_id: Id | None = None
    team_id: Id | None = None
    before_seq: Id | None = None
    limit: Limit = 200


class HistoryAnswer(Struct):
    messages: list[ImMsg]  # oldest first
    more: bool  # older messages exist
    chat_id: Id | None = None
    team_id: Id | None = None


# Groups


class TeamRequest(Struct):
    user_id: Id  # the acting user: the same rules apply as when they act over the protocol
    team_id: Id = 0
    team_name: str = ""
    member_ids: list[Id] = msgspec.field(default_factory=list)


class TeamAnswer(Struct):
    """The group after the operation; ``seq`` is its event's (absent: nothing changed). A
    create with exactly one other member makes a one-to-one chat: ``chatId`` and
    ``toUserId`` instead."""

    member_ids: list[Id]  # always there, empty for a one-to-one chat
    team_id: Id | None = None
    team_name: str | None = None
    owner_id: Id | None = None
    seq: Id | None = None
    chat_id: Id | None = None
    to_user_id: Id | None = None
