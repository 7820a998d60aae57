import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.framing import HEADER_SIZE, FrameDecoder, encode_frame


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


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_frames_split_anywhere_come_out_whole_and_in_order(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=300)
    out: list[bytes] = []
    for chunk in _split(stream, cuts):
        frames, error = decoder.receive(chunk)
        assert error is None
        out += frames
    assert out == payloads
    assert decoder.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=10), st.integers(min_value=0, max_value=100))
def test_arbitrary_bytes_never_raise_and_never_pile_up(chunks: list[bytes], limit: int) -> None:
    decoder = FrameDecoder(max_frame=limit)
    failed = False
    for chunk in chunks:
        frames, error = decoder.receive(chunk)
        assert all(len(f) <= limit for f in frames)
        if failed:  # after a bad length the stream is over: nothing more comes out
            assert frames == [] and error is None
        if error is not None:
            assert error.code == ErrorCode.TOO_LARGE and error.close
            failed = True
        assert decoder.buffered <= limit + HEADER_SIZE + 64


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=50), max_size=5),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_frames_before_a_bad_length_are_still_handed_back(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(p) for p in payloads) + struct.pack(">I", 51) + b"x" * 60
    decoder = FrameDecoder(max_frame=50)
    out: list[bytes] = []
    errors = []
    for chunk in _split(stream, cuts):
        frames, error = decoder.receive(chunk)
        out += frames
        errors += [error] if error else []
    assert out == payloads
    assert [e.code for e in errors] == [ErrorCode.TOO_LARGE]
