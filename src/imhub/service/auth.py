"""Login tokens: JWTs signed with the server's secret (HS256), ``sub`` = the user id.

A token is checked completely before anything else sees it: the signature, its lifetime, and
that ``sub`` is a user id the protocol can carry (decimal digits, 1 to 2**53 - 1). A signed
token naming a number no column can hold is refused here, with the other bad tokens, and
never reaches storage.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import jwt

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import MAX_ID

ALGORITHM = "HS256"
DEFAULT_TTL = 7 * 24 * 3600

_USER_ID = re.compile(r"[1-9][0-9]{0,15}")  # ASCII digits only: int() also takes "٣", " 7", "1_0"


class Grant(NamedTuple):
    """What a valid token allows: who, and until when (seconds since the epoch)."""

    user_id: int
    expires: int


class TokenAuthority:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def mint(self, user_id: int, ttl: int = DEFAULT_TTL) -> str:
        now = int(time.time())
        claims = {"sub": str(user_id), "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Grant:
        """The user and expiry a valid token names; ``ImError(UNAUTHORIZED)`` otherwise."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise ImError(ErrorCode.UNAUTHORIZED, "token expired", close=True) from None
        except jwt.InvalidTokenError:
            raise ImError(ErrorCode.UNAUTHORIZED, "invalid token", close=True) from None
        sub = claims["sub"]  # a string: PyJWT checks that
        if not _USER_ID.fullmatch(sub) or int(sub) > MAX_ID:
            raise ImError(ErrorCode.UNAUTHORIZED, "invalid token: bad user id", close=True)
        return Grant(int(sub), int(claims["exp"]))  # PyJWT checked that int() takes exp
