"""TCP framing: a 4-byte unsigned big-endian length, then that many bytes of UTF-8 JSON.

``FrameDecoder`` is a small state machine: bytes in, complete payloads out. It never holds
more than one frame's worth of bytes beyond what it hands back, and refuses a length over the
limit before reading the body, so a peer cannot make it buffer an oversized frame. It looks at
lengths only: what a payload holds is the codec's business.
"""

from __future__ import annotations

import struct

from imhub.protocol.errors import ErrorCode, ImError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME = 64 * 1024


def frame_header(length: int) -> bytes:
    """The 4-byte prefix for a payload of ``length`` bytes."""
    return HEADER.pack(length)


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a TCP byte stream into frame payloads."""

    __slots__ = ("_buf", "_failed", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self._failed = False
        self.max_frame = max_frame

    def receive(self, data: bytes) -> tuple[list[bytes], ImError | None]:
        """Add received bytes; return every payload now complete, in order, and the error that
        ends the stream, if one came after them. Never raises.

        A length over the limit is ``ImError(TOO_LARGE, close=True)``: the stream cannot be
        resynchronised after it, so the decoder keeps nothing and ignores whatever follows,
        while the frames completed before the bad length are still handed back.
        """
        if self._failed:
            return [], None
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (length,) = HEADER.unpack_from(buf, pos)
            if length > self.max_frame:
                buf.clear()
                self._failed = True
                return frames, ImError(
                    ErrorCode.TOO_LARGE,
                    f"frame of {length} bytes is over the limit of {self.max_frame}",
                    close=True,
                )
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            frames.append(bytes(buf[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]
        return frames, None

    def feed(self, data: bytes) -> list[bytes]:
        """``receive`` for a reader that gives up on a broken stream: raises the error instead
        (dropping the frames before it)."""
        frames, error = self.receive(data)
        if error is not None:
            raise error
        return frames

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)
