"""Our WebSocket frame headers, read back by an independent parser (websockets' sans-I/O
protocol, as a client), however the bytes are split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from imhub.protocol.wsframe import ws_frame_header

# Lengths on both sides of where the header grows (126 and 65,536 bytes).
LENGTHS = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 65537]) | st.integers(0, 2000)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(LENGTHS, st.binary(min_size=1, max_size=1)), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=300_000), max_size=10),
)
def test_frames_read_back_whole_and_in_order(
    specs: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    payloads = [fill * length for length, fill in specs]
    stream = b"".join(ws_frame_header(len(p)) + p for p in payloads)
    client = Protocol(Side.CLIENT, max_size=None)
    points = sorted({min(c, len(stream)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        client.receive_data(stream[a:b])
    frames = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [f.opcode for f in frames] == [Opcode.TEXT] * len(payloads)
    assert [f.data for f in frames] == payloads
    assert all(f.fin for f in frames)
    assert client.parser_exc is None
