"""Server-to-client WebSocket frame headers (RFC 6455 section 5.2), unmasked and uncompressed.

The gateway writes pre-encoded frames itself so that one encoded message can be written to
many WebSocket connections without encoding it again; aiohttp still reads, pings and closes.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
_FIN = 0x80
_LEN2 = struct.Struct(">BBH")
_LEN8 = struct.Struct(">BBQ")


def ws_frame_header(length: int, opcode: int = OP_TEXT) -> bytes:
    """Header of a final, unmasked frame carrying ``length`` payload bytes."""
    first = _FIN | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _LEN2.pack(first, 126, length)
    return _LEN8.pack(first, 127, length)
