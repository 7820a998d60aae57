"""The application's arguments, checked before anything is sent or saved: a malformed call
raises ``ValueError`` at once and changes nothing (the server would refuse it anyway, and a
refused message in the outbox would be resent at every reconnect). Ranges as on the wire
(docs/protocol.md): ids 0 … 2**53 - 1, kinds 0 … 2**31 - 1, ``msgIdClient`` 1–50 characters."""

from __future__ import annotations

import uuid
from typing import Any

from imhub.protocol.conversation import conv_key
from imhub.protocol.messages import MAX_ID, MsgType

SMALL_MAX = 2**31 - 1


def whole(name: str, value: Any, low: int = 0, high: int = MAX_ID) -> int:
    """``value`` as an int in [low, high] (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    plain: str = "" + value  # a str subclass as the plain string it holds
    try:
        plain.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid text (it has no UTF-8 form)") from None
    return plain


def conversation(chat_id: Any, team_id: Any) -> int:
    """The conversation named by exactly one of ``chat_id`` and ``team_id``."""
    if (chat_id is None) == (team_id is None):
        raise ValueError("give exactly one of chat_id and team_id")
    if chat_id is not None:
        return conv_key(whole("chat_id", chat_id, 1), None)
    return conv_key(None, whole("team_id", team_id, 1))


def message_id(value: Any) -> str:
    """The caller's ``msg_id_client`` (1–50 characters), or a fresh one."""
    if value is None:
        return uuid.uuid4().hex
    mid = text("msg_id_client", value)
    if not 1 <= len(mid) <= 50:
        raise ValueError(f"msg_id_client has 1 to 50 characters, not {len(mid)}")
    return mid


def chat(
    to_user: Any, team: Any, body: Any, body_type: Any, voice_time: Any, mid: Any
) -> dict[str, Any]:
    """The chat message ``send_chat`` sends (msgType 3)."""
    if (to_user is None) == (team is None):
        raise ValueError("give exactly one of to_user and team")
    payload: dict[str, Any] = {
        "msgType": MsgType.CHAT,
        "msgIdClient": message_id(mid),
        "bodyType": whole("body_type", body_type, 0, SMALL_MAX),
        "body": text("body", body),
    }
    if team is not None:
        payload["teamId"] = whole("team", team, 1)
    else:
        payload["toUserId"] = whole("to_user", to_user, 1)
    if voice_time is not None and whole("voice_time", voice_time, 0, SMALL_MAX):
        payload["time"] = voice_time
    return payload


def request(value: Any) -> dict[str, Any]:
    """Any protocol request: a dict with an integer ``msgType``."""
    if not isinstance(value, dict) or isinstance(value.get("msgType"), bool):
        raise ValueError("a request is a dict with an integer msgType")
    whole("msgType", value.get("msgType"), 0, SMALL_MAX)
    return value


def limit(value: Any) -> int:
    return whole("limit", value, 1, 500)
