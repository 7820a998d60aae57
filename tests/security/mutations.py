"""Hypothesis strategies for what an attacker sends: valid protocol messages and HTTP
requests, then mutated (bit flips, truncations, inserted bytes, invalid UTF-8, deep JSON,
fields of the wrong type), framed with lengths that lie, and split at odd points.

Everything here is bytes; ``tests/security/test_fuzz_server.py`` sends it. The ids a strategy
may name are given by the test (``Names``), so that the pair whose chat is watched is never
the target of a destructive request (a delete of its users, a lying login as one of them).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.protocol.bad_payloads import TOKENS, json_values, near_json

MASK_KEY = st.binary(min_size=4, max_size=4)
BAD_UTF8 = [b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x9f", b"\xf4\x90\x80\x80"]
NASTY = st.sampled_from(
    [2**64, 2**53, -1, 1.5, 1e308, "", "\u0000", "\ud800", "x" * 300, [], {}, None, True]
)


@dataclass(frozen=True)
class Names:
    """What the fuzzer may name: ids that are its own or nobody's, and tokens."""

    users: list[int]  # the fuzzer's own users, and ids of nobody: never the pair
    chats: list[int]
    teams: list[int]
    tokens: list[str]  # valid, expired, forged, garbage


def deep(depth: int) -> bytes:
    return b'{"msgType":0,"x":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def message(draw: st.DrawFn, n: Names) -> dict[str, Any]:
    """A message of any type, mostly with the fields its type needs."""
    user, chat, team = (st.sampled_from(x) for x in (n.users, n.chats, n.teams))
    kind = draw(st.integers(0, 24))
    msg: dict[str, Any] = {"msgType": kind, "msgIdClient": draw(st.text(max_size=12))}
    if kind == 1:
        msg["token"] = draw(st.sampled_from(n.tokens))
    fields = {
        "toUserId": user,
        "chatId": chat,
        "teamId": team,
        "seq": st.integers(0, 50),
        "body": st.text(max_size=40),
        "bodyType": st.integers(0, 9),
        "teamName": st.text(max_size=60),
        "memberIds": st.lists(user, max_size=4),
        "convs": st.lists(st.fixed_dictionaries({"chatId": chat, "seq": st.integers(0, 9)})),
        "limit": st.integers(0, 600),
        "beforeSeq": st.integers(0, 60),
        "withReaders": st.booleans(),
        "backlog": st.booleans(),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=5, unique=True)):
        msg[name] = draw(fields[name])
    return msg


@st.composite
def json_mutated(draw: st.DrawFn, value: dict[str, Any]) -> dict[str, Any]:
    """The object with fields dropped, or set to values of any type (huge, negative, deep)."""
    out = dict(value)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*out, "msgType", "convs", "messages", "x"]))
        if draw(st.booleans()) and key in out:
            del out[key]
        else:
            out[key] = draw(NASTY | json_values(max_leaves=6))
    return out


@st.composite
def byte_mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """The bytes with bits flipped, pieces cut out or inserted (invalid UTF-8 above all),
    or truncated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if how == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del out[at : at + draw(st.integers(1, 8))]
        elif how == "insert":
            out[at:at] = draw(st.sampled_from(BAD_UTF8 + TOKENS) | st.binary(max_size=4))
        else:
            del out[at:]
    return bytes(out)


@st.composite
def payload(draw: st.DrawFn, n: Names) -> bytes:
    """One message's bytes: valid, mutated as JSON, mutated as bytes, or garbage."""
    msg = draw(message(n))
    how = draw(st.sampled_from(["valid", "json", "bytes", "both", "garbage", "deep"]))
    if how in ("json", "both"):
        msg = draw(json_mutated(msg))
    data = json.dumps(msg).encode()
    if how in ("bytes", "both"):
        data = draw(byte_mutated(data))
    if how == "garbage":
        data = draw(st.binary(max_size=80) | near_json())
    if how == "deep":
        data = deep(draw(st.sampled_from([100, 1000, 5000, 20000])))
    return data


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = (data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True))
    return [p for p in pieces if p]


@st.composite
def tcp_stream(draw: st.DrawFn, n: Names) -> list[bytes]:
    """Frames (the first often a login) whose lengths may lie, in pieces cut anywhere."""
    items = draw(st.lists(payload(n), min_size=1, max_size=6))
    if draw(st.booleans()):
        login = {"msgType": 1, "token": draw(st.sampled_from(n.tokens))}
        items.insert(0, json.dumps(login).encode())
    stream = b""
    for data in items:
        length = len(data)
        lie = draw(st.sampled_from(["no"] * 6 + ["delta", "huge", "limit"]))
        if lie == "delta":
            length = max(0, length + draw(st.integers(-8, 8)))
        elif lie == "huge":
            length = draw(st.sampled_from([2**31, 2**32 - 1, 2**24, 10**7]))
        elif lie == "limit":
            length = 64 * 1024 + draw(st.integers(0, 1))
        stream += struct.pack(">I", length) + data
    return split(stream, draw(st.lists(st.integers(0, len(stream)), max_size=6)))


@st.composite
def ws_messages(draw: st.DrawFn, n: Names) -> tuple[list[tuple[bytes, bool]], str | None]:
    """WebSocket messages (bytes, sent as text?) after a login with one of the tokens."""
    token = draw(st.none() | st.sampled_from(n.tokens))
    items = draw(st.lists(st.tuples(payload(n), st.booleans()), min_size=1, max_size=5))
    return items, token


WS_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@st.composite
def ws_frame(draw: st.DrawFn, n: Names) -> bytes:
    """One raw frame: any opcode and reserved bits, masked or not, a length in any of its
    three encodings (or one that lies), the payload a message or a close code."""
    opcode = draw(st.sampled_from([1, 2, 0, 8, 9, 10]) | st.integers(0, 15))
    if opcode == 8:
        codes = st.integers(0, 5000).map(lambda c: struct.pack(">H", c))
        data = draw(st.binary(max_size=3) | codes)
        data += draw(st.sampled_from([b"", b"bye", b"\xff"]))
    else:
        data = draw(payload(n))
    first = (0x80 if draw(st.integers(0, 4)) else 0) | draw(st.sampled_from([0] * 5 + [0x40, 0x70]))
    masked = draw(st.integers(0, 6)) > 0
    length = len(data)
    lie = draw(st.sampled_from(["no"] * 5 + ["delta", "huge"]))
    if lie == "delta":
        length = max(0, length + draw(st.integers(-4, 4)))
    elif lie == "huge":
        length = draw(st.sampled_from([2**63 - 1, 2**32, 70000, 126]))
    form = draw(st.sampled_from(["short", "16", "64"]))
    if length < 126 and form == "short":
        head = bytes([first | opcode, (0x80 if masked else 0) | length])
    elif length < 65536 and form != "64":
        head = bytes([first | opcode, (0x80 if masked else 0) | 126]) + struct.pack(">H", length)
    else:
        head = bytes([first | opcode, (0x80 if masked else 0) | 127]) + struct.pack(">Q", length)
    if masked:
        key = draw(MASK_KEY)
        return head + key + mask(data, key)
    return head + data


@st.composite
def ws_raw_stream(draw: st.DrawFn, n: Names) -> list[bytes]:
    """A handshake, then raw frames (the first often a login), in pieces cut anywhere."""
    frames = draw(st.lists(ws_frame(n), min_size=1, max_size=5))
    if draw(st.booleans()):
        login = json.dumps({"msgType": 1, "token": draw(st.sampled_from(n.tokens))}).encode()
        key = draw(MASK_KEY)
        frames.insert(0, bytes([0x81, 0x80 | len(login)]) + key + mask(login, key))
    stream = b"".join(frames)
    return [WS_HANDSHAKE, *split(stream, draw(st.lists(st.integers(0, len(stream)), max_size=4)))]


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW", "get"]
HEADER_NAMES = ["Content-Type", "Content-Length", "Transfer-Encoding", "Authorization",
                "X-Api-Key", "Connection", "Expect", "Upgrade", "Content-Encoding", "Host",
                "Accept-Encoding", "Range"]  # fmt: skip


@st.composite
def http_request(
    draw: st.DrawFn, n: Names, paths: list[tuple[str, str]], key: str, bodies: dict[str, Any]
) -> bytes:
    """One raw request: a documented route (its parameters any text; at times another
    method), a query, headers right and wrong (the key, lying lengths, chunked), a body
    valid or mutated."""
    template, method = draw(st.sampled_from(paths))
    if draw(st.integers(0, 3)) == 0:
        method = draw(st.sampled_from(METHODS))
    ident = st.sampled_from([str(u) for u in n.users] + ["0", "-1", "x", "%ff", "9" * 30])
    path = template.replace("{userId}", draw(ident)).replace("{teamId}", draw(ident))
    path = path.replace("{name}", draw(st.sampled_from(["app.js", "..%2f..", "x"])))
    if draw(st.booleans()):
        query = draw(st.lists(st.sampled_from(["limit", "after", "chatId", "teamId", "beforeSeq"])))
        values = st.sampled_from(["1", "-1", "", "x", "chat:1", "team:", "9" * 30, "%ff"])
        path += "?" + "&".join(f"{q}={draw(values)}" for q in query)
    doc = bodies.get(template.split("?")[0], {"body": "x"})
    body = json.dumps(draw(json_mutated(doc) if draw(st.booleans()) else st.just(doc))).encode()
    if draw(st.integers(0, 3)) == 0:
        body = draw(byte_mutated(body) | st.binary(max_size=60) | st.just(deep(5000)))
    headers = {"Host": "127.0.0.1", "Connection": "close", "Content-Type": "application/json"}
    if draw(st.integers(0, 4)):
        headers["Authorization"] = f"Bearer {key}"
    headers["Content-Length"] = str(len(body))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(HEADER_NAMES) | st.text("abcXY-", min_size=1, max_size=8))
        headers[name] = draw(
            st.sampled_from(["chunked", "gzip", "-1", "0", "99999999999", "close", "100-continue",
                             f"Bearer {key}", "bytes=0-1", "a\x01b"])
            | st.text(max_size=10).filter(lambda v: "\r" not in v and "\n" not in v)
        )  # fmt: skip
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    raw = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    if draw(st.integers(0, 6)) == 0:
        raw = draw(byte_mutated(raw))
    return raw
