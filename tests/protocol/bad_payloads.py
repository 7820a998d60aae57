"""Payloads no message can be made of, shared by the codec's tests and the end-to-end ones,
and hypothesis strategies for arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

DEEP = 10_000

# name → payload; each must be refused with 400, and nothing else may happen.
UNDECODABLE: dict[str, bytes] = {
    "invalid UTF-8 in a string": b'{"msgType":3,"toUserId":1,"msgIdClient":"u1","body":"caf\xc3"}',
    "invalid UTF-8 in an ignored field": b'{"msgType":0,"extra":"\xff\xfe"}',
    "invalid UTF-8 in a key": b'{"msgType":0,"\xed\xa0\x80":1}',
    "a lone surrogate escape": b'{"msgType":3,"toUserId":1,"msgIdClient":"u2","body":"\\ud800"}',
    "arrays nested 10,000 deep": b'{"msgType":0,"extra":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "objects nested 10,000 deep": b'{"msgType":0,"x":'
    + b'{"a":' * DEEP
    + b"1"
    + b"}" * DEEP
    + b"}",
    "messages nested 2,000 deep": b'{"msgType":0,"messages":['
    + b'{"msgType":0,"messages":[' * 2000
    + b"]}" * 2000
    + b"]}",
    "a top level nested 10,000 deep": b"[" * DEEP + b"]" * DEEP,
    "an id beyond 64 bits": b'{"msgType":3,"toUserId":%d,"msgIdClient":"u3","body":"x"}' % 2**64,
    "a msgType beyond 64 bits": b'{"msgType":%d}' % 2**70,
    "a seq beyond 2^53": b'{"msgType":12,"chatId":1,"seq":%d}' % 2**53,
    "a bodyType beyond 32 bits": b'{"msgType":3,"toUserId":1,"msgIdClient":"u4","body":"x",'
    b'"bodyType":%d}' % 2**31,
    "a negative id": b'{"msgType":5,"chatId":-1}',
    "a fractional id": b'{"msgType":5,"chatId":1.5}',
    "an exponent beyond any float": b'{"msgType":1e999}',
    "NaN": b'{"msgType":NaN}',
    "an id in a list beyond 64 bits": b'{"msgType":17,"teamId":1,"memberIds":[1,%d]}' % 2**64,
    "a conversation id beyond 64 bits": b'{"msgType":11,"convs":[{"chatId":%d}]}' % 2**64,
    "not JSON": b"\x00\xff\x13garbage",
    "nothing": b"",
    "a JSON array": b"[1,2,3]",
    "JSON null": b"null",
    "truncated JSON": b'{"msgType":',
    "trailing garbage": b'{"msgType":0}}',
    "no msgType": b'{"body":"x"}',
}

# Ids from the payloads above that the server should echo on the refusal.
# The refusals that can still name the message: its msgIdClient is readable on its own.
ECHOED = {
    "invalid UTF-8 in a string": "u1",
    "a lone surrogate escape": "u2",
    "an id beyond 64 bits": "u3",
    "a bodyType beyond 32 bits": "u4",
}


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Any JSON value: integers of any size, any strings, nested lists and objects."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects_with(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose keys are mostly the given field names, with any values."""
    return st.dictionaries(
        st.sampled_from(fields) | st.text(max_size=8), json_values(), max_size=len(fields) + 2
    )


@st.composite
def corrupted(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """The JSON text of a document with some bytes replaced by arbitrary ones (often making
    invalid UTF-8 inside a string, or breaking the syntax)."""
    data = bytearray(json.dumps(draw(documents)).encode())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


# Pieces JSON is made of, and pieces that break it: joined at random they make near-JSON.
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b" ",
    b'"msgType"',
    b'"body"',
    b'"toUserId"',
    b'"convs"',
    b'"chatId"',
    b"0",
    b"3",
    b"-1",
    b"1.5",
    b"1e999",
    b"%d" % 2**64,
    b"null",
    b"true",
    b"\\",
    b"\\u",
    b"d800",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\xf0\x9f",
]


def near_json() -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
