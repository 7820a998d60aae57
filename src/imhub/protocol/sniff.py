"""Tell the wire protocols apart from the first byte of a connection.

A TCP frame starts with a big-endian length below 2**24 (frames are limited far below that),
so its first byte is 0x00. An HTTP request starts with a method in upper-case ASCII letters.
A TLS connection starts with a handshake record (its ClientHello), type 0x16. One byte is
therefore enough, however the handshake is split across reads. Inside TLS the same rule tells
frames from HTTP again.
"""

from __future__ import annotations

from enum import Enum

TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record


class Wire(Enum):
    HTTP = "http"  # HTTP API, browser client and the WebSocket upgrade on /ws
    FRAMES = "frames"  # length-prefixed JSON frames over raw TCP
    TLS = "tls"  # a TLS ClientHello: the same two protocols inside it


def sniff(first_bytes: bytes) -> Wire | None:
    """The protocol of a connection from its first bytes, or None when none arrived yet."""
    if not first_bytes:
        return None
    first = first_bytes[0]
    if 0x41 <= first <= 0x5A:
        return Wire.HTTP
    return Wire.TLS if first == TLS_HANDSHAKE else Wire.FRAMES
