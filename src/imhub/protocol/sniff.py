"""Tell the two wire protocols apart from the first byte of a connection.

A TCP frame starts with a big-endian length below 2**24 (frames are limited far below that),
so its first byte is 0x00. An HTTP request starts with a method in upper-case ASCII letters.
One byte is therefore enough, however the handshake is split across reads.
"""

from __future__ import annotations

from enum import Enum


class Wire(Enum):
    HTTP = "http"  # HTTP API, browser client and the WebSocket upgrade on /ws
    FRAMES = "frames"  # length-prefixed JSON frames over raw TCP


def sniff(first_bytes: bytes) -> Wire | None:
    """The protocol of a connection from its first bytes, or None when none arrived yet."""
    if not first_bytes:
        return None
    return Wire.HTTP if 0x41 <= first_bytes[0] <= 0x5A else Wire.FRAMES
