"""JSON encoding and decoding of ``ImMsg`` with errors mapped to codes in one place."""

from __future__ import annotations

from typing import Any

import msgspec

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType

_decoder = msgspec.json.Decoder(ImMsg)
_loose = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode(payload: bytes | str) -> ImMsg:
    """Parse one message. Raises ``ImError(BAD_REQUEST)`` naming what was wrong.

    On a validation error the message's ``msgIdClient`` is recovered if it can be, so the error
    frame can echo it and the client knows which send failed.
    """
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise ImError(
            ErrorCode.BAD_REQUEST,
            f"invalid message: {exc}",
            msg_id_client=_recover_msg_id_client(payload),
        ) from None
    except msgspec.DecodeError as exc:
        raise ImError(ErrorCode.BAD_REQUEST, f"malformed JSON: {exc}") from None


def _recover_msg_id_client(payload: bytes | str) -> str | None:
    try:
        raw: Any = _loose.decode(payload)
    except msgspec.DecodeError:
        return None
    value = raw.get("msgIdClient") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def encode(msg: ImMsg) -> bytes:
    return _encoder.encode(msg)


def encode_json(value: Any) -> bytes:
    """Encode any msgspec-supported value (used by the HTTP API)."""
    return _encoder.encode(value)


def error_msg(code: ErrorCode, reason: str, msg_id_client: str | None = None) -> ImMsg:
    return ImMsg(msg_type=MsgType.ERROR, code=code, reason=reason, msg_id_client=msg_id_client)
