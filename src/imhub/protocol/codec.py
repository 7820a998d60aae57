"""JSON encoding and decoding of ``ImMsg`` with errors mapped to codes in one place.

Decoding is total: whatever the bytes (invalid UTF-8, nesting deeper than the interpreter's
stack, integers of any size, any garbage), the outcome is a value or ``ImError(BAD_REQUEST)``
with a reason for people. No other exception leaves this module, so a transport can hand it a
peer's bytes without guarding against anything else.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType

T = TypeVar("T")


class _IdOnly(msgspec.Struct, rename="camel"):
    """A message seen only for its ``msgIdClient``: every other field is skipped unbuilt, so
    it is found even when another field is what could not be decoded."""

    msg_id_client: str | None = None


_decoder = msgspec.json.Decoder(ImMsg)
_id_only = msgspec.json.Decoder(_IdOnly)
_encoder = msgspec.json.Encoder()


def decode(payload: bytes | str) -> ImMsg:
    """Parse one message. Raises ``ImError(BAD_REQUEST)`` naming what was wrong.

    On a validation error the message's ``msgIdClient`` is recovered if it can be, so the error
    frame can echo it and the client knows which send failed.
    """
    try:
        _check_utf8(payload)
        msg = _decoder.decode(payload)
        _check_no_nul(payload)
        return msg
    except Exception as exc:
        raise ImError(
            ErrorCode.BAD_REQUEST,
            refusal(exc, "message", payload),
            msg_id_client=_recover_msg_id_client(payload),
        ) from None


def decode_as(decoder: msgspec.json.Decoder[T], payload: bytes | str, what: str) -> T:
    """Parse ``payload`` with ``decoder`` (e.g. an HTTP request body, ``what`` = "request");
    raises ``ImError(BAD_REQUEST)`` for anything it cannot decode, as ``decode`` does."""
    try:
        _check_utf8(payload)
        value = decoder.decode(payload)
        _check_no_nul(payload)
        return value
    except Exception as exc:
        raise ImError(ErrorCode.BAD_REQUEST, refusal(exc, what, payload)) from None


def _check_utf8(payload: bytes | str) -> None:
    """Raise ``UnicodeDecodeError`` unless the whole payload is UTF-8. msgspec checks only the
    strings it keeps, and skips the fields it ignores; we refuse any text that is not UTF-8,
    as JSON (and a WebSocket text message) must be. Nearly every message is ASCII, for which
    the check costs next to nothing."""
    if isinstance(payload, bytes) and not payload.isascii():
        payload.decode()


class NulInText(ValueError):
    """A string holds U+0000."""


def _check_no_nul(payload: bytes | str) -> None:
    """Raise ``NulInText`` if a string of the JSON text holds U+0000 (``\\u0000``, the only
    way JSON can carry it). PostgreSQL's text types cannot store it, so every backend refuses
    it alike, here, before anything is stored. The quick test looks at the bytes; only a
    payload that holds the escape (or an escaped backslash before ``u0000``) is walked."""
    escape = b"\\u0000" if isinstance(payload, bytes) else "\\u0000"
    if escape in payload and _has_nul(msgspec.json.decode(payload)):  # type: ignore[operator]
        raise NulInText


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def refusal(exc: Exception, what: str, payload: bytes | str = b"") -> str:
    """The reason given to a peer whose input ``payload`` failed to decode with ``exc``."""
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid {what}: {exc}"  # names the field: "Expected `int` … - at `$.toUserId`"
    if isinstance(exc, msgspec.DecodeError):
        if str(exc) == "Input data was truncated" and _surrogate_escape(payload):
            # msgspec's words for an escape of half a surrogate pair alone: say what it is
            return "malformed JSON: a \\uD800-\\uDFFF escape that is not half of a surrogate pair"
        return f"malformed JSON: {exc}"
    if isinstance(exc, UnicodeDecodeError):  # msgspec checks UTF-8 only when it builds a str
        return f"malformed JSON: invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, NulInText):
        return f"invalid {what}: text may not contain U+0000 (NUL)"
    if isinstance(exc, RecursionError):
        return "malformed JSON: nested too deeply"
    return f"malformed JSON: {type(exc).__name__}"


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8", "replace") if isinstance(payload, str) else payload


def _surrogate_escape(payload: bytes | str) -> bool:
    return _SURROGATE.search(_as_bytes(payload)) is not None


def _recover_msg_id_client(payload: bytes | str) -> str | None:
    """The refused message's ``msgIdClient``, if it is a readable string in a JSON object."""
    try:
        return _id_only.decode(payload).msg_id_client
    except Exception:  # not an object, or the id itself unreadable: nothing to echo
        pass
    # msgspec refuses half a surrogate pair even in a field it skips: read again with every
    # such escape made harmless, unless that changed the id itself.
    data = _as_bytes(payload)
    if _SURROGATE.search(data) is None:
        return None
    try:
        found = _id_only.decode(_SURROGATE.sub(rb"\\uFFFD", data)).msg_id_client
    except Exception:
        return None
    return None if found is not None and "\ufffd" in found else found


def encode(msg: ImMsg) -> bytes:
    return _encoder.encode(msg)


def encode_json(value: Any) -> bytes:
    """Encode any msgspec-supported value (used by the HTTP API)."""
    return _encoder.encode(value)


def error_msg(code: ErrorCode, reason: str, msg_id_client: str | None = None) -> ImMsg:
    return ImMsg(msg_type=MsgType.ERROR, code=code, reason=reason, msg_id_client=msg_id_client)
