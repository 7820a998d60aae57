"""Error codes carried in ``code`` of an error frame (msgType 8) and of HTTP error bodies.

They follow HTTP status numbers so a reader knows them already. ``retryable`` tells a client
whether sending the same message again (same ``msgIdClient``) can succeed.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    OK = 0
    BAD_REQUEST = 400  # malformed JSON, missing or wrongly typed field, unknown msgType
    UNAUTHORIZED = 401  # bad or expired token, or a message before login
    FORBIDDEN = 403  # acting as another user
    NOT_FOUND = 404  # unknown recipient or chat
    CONFLICT = 409  # already logged in on this connection
    TIMEOUT = 408  # no login in time, or idle for too long
    TOO_LARGE = 413  # frame over the configured limit
    SLOW_CONSUMER = 429  # the connection did not read what it was sent
    TOO_MANY = 429  # over a rate or connection limit: nothing was done, try again later
    INTERNAL = 500  # storage failed: nothing was stored, retry with the same msgIdClient
    SHUTTING_DOWN = 503  # the server is stopping: reconnect later

    @property
    def retryable(self) -> bool:
        return self in (ErrorCode.INTERNAL, ErrorCode.SHUTTING_DOWN, ErrorCode.SLOW_CONSUMER)

    @classmethod
    def is_retryable(cls, code: int) -> bool:
        """For a code received on the wire, which may be one this version does not know."""
        return code in cls._value2member_map_ and cls(code).retryable


class ImError(Exception):
    """A refusal that becomes an error frame (or an HTTP 4xx/5xx) with a code and a reason."""

    def __init__(
        self,
        code: ErrorCode,
        reason: str,
        *,
        close: bool = False,
        msg_id_client: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.close = close  # the stream cannot be trusted any more, or the peer must go
        self.msg_id_client = msg_id_client  # echoed so the client knows which send failed


def unknown_users(ids: set[int], shown: int = 10) -> str:
    """The reason for users that do not exist: the first ``shown`` ids, and how many more
    (a request may name thousands; a reason stays one short line)."""
    first = sorted(ids)[:shown]
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"unknown users: {', '.join(map(str, first))}{more}"
