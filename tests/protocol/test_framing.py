import struct

import pytest

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.framing import FrameDecoder, encode_frame


def test_frames_split_at_every_byte_boundary() -> None:
    stream = encode_frame(b'{"msgType":0}') + encode_frame(b"") + encode_frame(b"x" * 300)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert frames == [b'{"msgType":0}', b"", b"x" * 300]
        assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    stream = encode_frame(b"hello") * 3
    decoder = FrameDecoder()
    frames = [f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])]
    assert frames == [b"hello"] * 3


def test_length_over_limit_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(ImError) as err:
        decoder.feed(struct.pack(">I", 101))
    assert err.value.code == ErrorCode.TOO_LARGE
    assert err.value.close
    assert decoder.buffered == 0


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(encode_frame(b"a" * 100)) == [b"a" * 100]
