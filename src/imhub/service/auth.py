"""Login tokens: JWTs signed with the server's secret (HS256), ``sub`` = the user id."""

from __future__ import annotations

import time

import jwt

from imhub.protocol.errors import ErrorCode, ImError

ALGORITHM = "HS256"
DEFAULT_TTL = 7 * 24 * 3600


class TokenAuthority:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def mint(self, user_id: int, ttl: int = DEFAULT_TTL) -> str:
        now = int(time.time())
        claims = {"sub": str(user_id), "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> int:
        """The user id a valid token names; ``ImError(UNAUTHORIZED)`` otherwise."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
            )
            user_id = int(claims["sub"])
        except jwt.ExpiredSignatureError:
            raise ImError(ErrorCode.UNAUTHORIZED, "token expired", close=True) from None
        except (jwt.InvalidTokenError, ValueError):
            raise ImError(ErrorCode.UNAUTHORIZED, "invalid token", close=True) from None
        if user_id <= 0:
            raise ImError(ErrorCode.UNAUTHORIZED, "invalid token", close=True)
        return user_id
