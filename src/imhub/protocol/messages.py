"""The wire message: the seed's ``ImMsg`` fields, with its camelCase names, and the code tables.

Every field but ``msgType`` is optional on the wire; each handler checks the fields it needs.
Every integer field has a range, checked when a message is decoded, so nothing out of range
gets further: ids (``Id``) are below 2**53 so that JavaScript clients read them exactly, and
counts, kinds and codes (``SmallInt``) fit the 32-bit columns that store them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

import msgspec

MAX_ID = 2**53 - 1

Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
SmallInt = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class MsgType(IntEnum):
    """Message types: 0-7 are the seed's, 8 and up are imhub's."""

    HEARTBEAT = 0
    LOGIN = 1
    LOGOUT = 2
    CHAT = 3
    CHAT_ANSWER = 4
    CHAT_ENTER = 5
    CHAT_QUIT = 6
    NOTICE = 7
    ERROR = 8
    UNREAD = 9
    RECALL = 10
    SYNC = 11
    READ = 12
    RECEIPTS = 13
    HISTORY = 14
    CONVS = 15
    TEAM_CREATE = 16
    TEAM_ADD = 17
    TEAM_REMOVE = 18
    TEAM_LEAVE = 19
    TEAM_RENAME = 20
    TEAM_DISMISS = 21
    TEAM_INFO = 22


class ClientType(IntEnum):
    """The seed's client kinds (``fromClientType``)."""

    ANDROID = 0
    IOS = 1
    PC = 2
    APPLET = 3
    WEB = 4
    REST = 5


class BodyType(IntEnum):
    """The seed's body kinds (``bodyType``)."""

    TEXT = 0
    IMAGE = 1
    VOICE = 2
    VIDEO = 3
    FILE = 4
    LOCATION = 5
    LINK = 6
    TIPS = 7
    NOTIFICATION = 8


class UnreadChat(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True):
    """One conversation with unread messages, as the login and unread answers list them."""

    chat_id: Id | None = None
    team_id: Id | None = None
    count: SmallInt
    peer_user_id: Id | None = None


class Conv(msgspec.Struct, omit_defaults=True, rename="camel"):
    """A conversation: a one-to-one chat (``chatId``) or a group (``teamId``).

    In a sync request only the address and ``seq`` (the last sequence the client holds) are
    read; in answers the server fills in positions and the unread count."""

    chat_id: Id | None = None
    team_id: Id | None = None
    seq: Id | None = None
    peer_user_id: Id | None = None
    team_name: str | None = None
    last_seq: Id | None = None
    read_seq: Id | None = None
    peer_read_seq: Id | None = None
    unread: SmallInt | None = None
    left: bool | None = None  # a group you are no longer in: lastSeq is the event that ended it
    # A group: the event that began your (last) membership. Sync delivers nothing before it: a
    # member removed and added again gets nothing said while they were out.
    join_seq: Id | None = None


class ImMsg(msgspec.Struct, omit_defaults=True, rename="camel"):
    """One protocol message, in either direction. Unknown fields are ignored on decode."""

    msg_type: SmallInt
    chat_id: Id | None = None
    team_id: Id | None = None
    from_user_id: Id | None = None
    to_user_id: Id | None = None
    from_client_type: SmallInt | None = None
    msg_id_client: str | None = None
    msg_id_server: Id | None = None
    body_type: SmallInt | None = None
    body: str | None = None
    send_time: Id | None = None
    time: SmallInt | None = None
    token: str | None = None
    code: SmallInt | None = None
    reason: str | None = None
    user_id: Id | None = None
    notice_id: Id | None = None
    unread: list[UnreadChat] | None = None
    seq: Id | None = None
    ref_seq: Id | None = None
    recalled: bool | None = None
    before_seq: Id | None = None
    limit: SmallInt | None = None
    more: bool | None = None
    messages: list[ImMsg] | None = None
    convs: list[Conv] | None = None
    team_name: str | None = None
    owner_id: Id | None = None
    member_ids: list[Id] | None = None
    read_num: SmallInt | None = None
    reader_ids: list[Id] | None = None
    with_readers: bool | None = None
    backlog: bool | None = None
    refused: list[Conv] | None = None  # sync: named conversations that are not yours
