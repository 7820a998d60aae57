"""Every protocol decoder over arbitrary bytes split at arbitrary points: fed in pieces it
gives what it gives fed all at once, and it raises nothing but its documented error.

The decoders are those a peer's bytes reach before anything else: ``sniff`` (which wire),
``FrameDecoder`` (TCP frames), ``codec.decode`` (each payload), and the WebSocket frame
header we write (read back by an independent parser, whatever its length and payload).
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.framing import FrameDecoder, encode_frame
from imhub.protocol.messages import ImMsg
from imhub.protocol.sniff import Wire, sniff
from imhub.protocol.wsframe import ws_frame_header
from tests.protocol.bad_payloads import near_json

CUTS = st.lists(st.integers(min_value=0, max_value=2000), max_size=10)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def lying(length: int, body: bytes) -> bytes:
    return struct.pack(">I", length) + body


# Streams that look like frames often enough to get past the header: valid frames of any
# payload (JSON-ish or not), lengths that lie, and plain garbage, run together.
FRAMES = st.lists(
    st.binary(max_size=120).map(encode_frame)
    | near_json().map(encode_frame)
    | st.builds(lying, st.integers(0, 2**32 - 1), st.binary(max_size=20))
    | st.binary(max_size=30),
    max_size=8,
).map(b"".join)

Outcome = tuple[list[bytes], int | None, int]  # payloads, the error's code, bytes left over


def decode_stream(chunks: list[bytes], limit: int) -> Outcome:
    """What a FrameDecoder makes of the chunks, one ``receive`` each."""
    decoder = FrameDecoder(max_frame=limit)
    out: list[bytes] = []
    code = None
    for chunk in chunks:
        frames, error = decoder.receive(chunk)
        if code is not None:  # after the error that ends the stream, nothing more
            assert frames == [] and error is None
        out += frames
        if error is not None:
            assert isinstance(error, ImError) and error.close
            code = int(error.code)
    return out, code, decoder.buffered


@settings(max_examples=150, deadline=None)
@given(FRAMES, CUTS, st.sampled_from([0, 10, 120, 65536]))
def test_frame_decoder_in_pieces_is_the_frame_decoder_at_once(
    stream: bytes, cuts: list[int], limit: int
) -> None:
    whole = decode_stream([stream], limit)
    assert decode_stream(pieces(stream, cuts), limit) == whole
    frames, code, _ = whole
    assert code in (None, ErrorCode.TOO_LARGE)
    assert all(len(f) <= limit for f in frames)


@settings(max_examples=100, deadline=None)
@given(FRAMES, CUTS)
def test_feed_raises_nothing_but_too_large(stream: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame=120)
    for chunk in pieces(stream, cuts):
        try:
            decoder.feed(chunk)
        except ImError as exc:
            assert exc.code == ErrorCode.TOO_LARGE
            return


def decoded(payload: bytes) -> ImMsg | tuple[int, str, str | None]:
    """A message, or the refusal: nothing else may come out of the codec."""
    try:
        return codec.decode(payload)
    except ImError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST and exc.reason
        return int(exc.code), exc.reason, exc.msg_id_client


@settings(max_examples=200, deadline=None)
@given(FRAMES, CUTS)
def test_messages_of_a_stream_split_anywhere_are_those_of_the_whole(
    stream: bytes, cuts: list[int]
) -> None:
    at_once, _, _ = decode_stream([stream], 65536)
    in_pieces, _, _ = decode_stream(pieces(stream, cuts), 65536)
    assert [decoded(p) for p in in_pieces] == [decoded(p) for p in at_once]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), CUTS)
def test_sniff_decides_on_any_prefix_as_on_the_whole(data: bytes, cuts: list[int]) -> None:
    whole = sniff(data)
    assert (whole is None) == (not data)
    assert whole is None or isinstance(whole, Wire)
    seen = b""
    for piece in pieces(data, cuts):
        seen += piece
        wire = sniff(seen)  # the listener sniffs what has arrived so far
        assert wire is None or wire is whole


def header_length(header: bytes) -> tuple[int, int]:
    """The payload length a header announces, and the header's size (RFC 6455, 5.2),
    checking that it is final, unmasked, text, and in its shortest form."""
    assert header[0] == 0x81 and not header[1] & 0x80
    short = header[1] & 0x7F
    if short < 126:
        return short, 2
    if short == 126:
        (n,) = struct.unpack(">H", header[2:4])
        assert n >= 126
        return n, 4
    (n,) = struct.unpack(">Q", header[2:10])
    assert 65536 <= n < 2**63
    return n, 10


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_ws_frame_header_announces_any_length_in_its_shortest_form(length: int) -> None:
    header = ws_frame_header(length)
    assert header_length(header) == (length, len(header))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=5), CUTS)
def test_ws_frames_of_any_text_read_back_whole_split_anywhere(
    texts: list[str], cuts: list[int]
) -> None:
    payloads = [t.encode() for t in texts]
    stream = b"".join(ws_frame_header(len(p)) + p for p in payloads)
    client = Protocol(Side.CLIENT, max_size=None)
    for piece in pieces(stream, cuts):
        client.receive_data(piece)
    frames = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, f.data, f.fin) for f in frames] == [(Opcode.TEXT, p, True) for p in payloads]
    assert client.parser_exc is None
