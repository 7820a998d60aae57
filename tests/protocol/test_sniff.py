import struct

from imhub.protocol.framing import encode_frame
from imhub.protocol.sniff import Wire, sniff
from imhub.protocol.wsframe import ws_frame_header


def test_http_methods_are_http() -> None:
    for method in (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"):
        assert sniff(method[:1]) is Wire.HTTP


def test_frames_start_with_a_zero_byte() -> None:
    assert sniff(encode_frame(b'{"msgType":1}')[:1]) is Wire.FRAMES
    assert sniff(struct.pack(">I", 65536)[:1]) is Wire.FRAMES


def test_nothing_yet() -> None:
    assert sniff(b"") is None


def test_ws_frame_header_lengths() -> None:
    assert ws_frame_header(5) == b"\x81\x05"
    assert ws_frame_header(125) == b"\x81\x7d"
    assert ws_frame_header(126) == b"\x81\x7e\x00\x7e"
    assert ws_frame_header(65535) == b"\x81\x7e\xff\xff"
    assert ws_frame_header(65536) == b"\x81\x7f" + struct.pack(">Q", 65536)


def test_a_tls_client_hello_is_tls() -> None:
    hello = bytes((0x16, 0x03, 0x01, 0x02, 0x00, 0x01))  # a handshake record: ClientHello
    assert sniff(hello[:1]) is Wire.TLS
