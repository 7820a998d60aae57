"""Login tokens (no network): a token names a user id the protocol can carry, or is refused
before anything else sees it."""

from __future__ import annotations

import time

import jwt
import pytest

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import MAX_ID
from imhub.service.auth import ALGORITHM, TokenAuthority

SECRET = "s" * 40


def signed(sub: object, **claims: object) -> str:
    """A correctly signed token with any ``sub``, as someone holding the secret could make."""
    return jwt.encode(
        {"sub": sub, "exp": int(time.time()) + 60, **claims}, SECRET, algorithm=ALGORITHM
    )


def test_a_valid_token_gives_its_user_and_expiry() -> None:
    auth = TokenAuthority(SECRET)
    before = int(time.time())
    grant = auth.verify(auth.mint(42, ttl=100))
    assert grant.user_id == 42
    assert before + 100 <= grant.expires <= int(time.time()) + 100
    assert auth.verify(signed(str(MAX_ID))).user_id == MAX_ID  # the largest id is fine


@pytest.mark.parametrize(
    "sub",
    [
        str(2**64),  # beyond 64 bits: made the store fail for everyone in its batch
        str(2**63),
        str(MAX_ID + 1),  # beyond what JavaScript clients read exactly
        "1" + "0" * 400,
        "0",
        "-1",
        "+7",
        "07",
        " 7",
        "7\n",
        "1_000",
        "\u0663",  # an Arabic-Indic digit: int() takes it
        "7.0",
        "1e3",
        "",
        "abc",
        7,  # not a string
    ],
)
def test_a_signed_token_with_a_bad_sub_is_refused(sub: object) -> None:
    with pytest.raises(ImError) as err:
        TokenAuthority(SECRET).verify(signed(sub))
    assert err.value.code == ErrorCode.UNAUTHORIZED and err.value.close


def test_an_expired_token_says_so() -> None:
    auth = TokenAuthority(SECRET)
    with pytest.raises(ImError) as err:
        auth.verify(auth.mint(1, ttl=-1))
    assert err.value.code == ErrorCode.UNAUTHORIZED and err.value.reason == "token expired"
