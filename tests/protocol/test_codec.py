import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import MAX_ID, ImMsg, MsgType, UnreadChat
from tests.protocol.bad_payloads import (
    ECHOED,
    UNDECODABLE,
    corrupted,
    json_objects_with,
    json_values,
    near_json,
)


def test_round_trip_uses_the_seed_camel_case_names() -> None:
    msg = ImMsg(msg_type=MsgType.CHAT, to_user_id=2, msg_id_client="c1", body_type=0, body="hi")
    data = codec.encode(msg)
    assert data == b'{"msgType":3,"toUserId":2,"msgIdClient":"c1","bodyType":0,"body":"hi"}'
    assert codec.decode(data) == msg


def test_unknown_fields_are_ignored() -> None:
    assert codec.decode(b'{"msgType":0,"whatever":[1,2]}') == ImMsg(msg_type=0)


def test_nested_unread_list() -> None:
    msg = ImMsg(msg_type=1, code=0, unread=[UnreadChat(chat_id=5, count=2, peer_user_id=9)])
    assert b'"unread":[{"chatId":5,"count":2,"peerUserId":9}]' in codec.encode(msg)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1,2]", b"{}", b'{"msgType":"3"}', b'{"msgType":-1}', b"\xff\xfe"],
)
def test_bad_input_is_a_bad_request(payload: bytes) -> None:
    with pytest.raises(ImError) as err:
        codec.decode(payload)
    assert err.value.code == ErrorCode.BAD_REQUEST


def test_validation_error_names_the_field_and_echoes_msg_id_client() -> None:
    with pytest.raises(ImError) as err:
        codec.decode(b'{"msgType":3,"toUserId":"two","msgIdClient":"m7"}')
    assert "toUserId" in err.value.reason
    assert err.value.msg_id_client == "m7"


def test_ids_must_fit_in_a_javascript_number() -> None:
    assert codec.decode(b'{"msgType":3,"toUserId":%d}' % MAX_ID).to_user_id == MAX_ID
    with pytest.raises(ImError):
        codec.decode(b'{"msgType":3,"toUserId":%d}' % (MAX_ID + 1))


# Every undecodable input is a 400, whatever it is: the codec never raises anything else.

FIELDS = [f.encode_name for f in msgspec.inspect.type_info(ImMsg).fields]  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_undecodable_payloads_are_a_bad_request(payload: bytes) -> None:
    with pytest.raises(ImError) as err:
        codec.decode(payload)
    assert err.value.code == ErrorCode.BAD_REQUEST
    assert err.value.reason and "Error(" not in err.value.reason


@pytest.mark.parametrize("name", ECHOED)
def test_a_refused_value_out_of_range_still_echoes_msg_id_client(name: str) -> None:
    with pytest.raises(ImError) as err:
        codec.decode(UNDECODABLE[name])
    assert err.value.msg_id_client == ECHOED[name]


def test_any_text_that_is_not_utf8_is_refused_even_where_ignored() -> None:
    with pytest.raises(ImError) as err:
        codec.decode(b'{"msgType":0,"ignored":"\xc3\x28"}')
    assert "UTF-8" in err.value.reason
    assert codec.decode('{"msgType":0,"body":"żółw 🐢"}'.encode()).body == "żółw 🐢"


def _decodes_to_a_message_or_a_400(payload: bytes) -> None:
    try:
        msg = codec.decode(payload)
    except ImError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
        assert exc.reason
        return
    # What decodes is in range everywhere, so it encodes and reads back the same.
    assert codec.decode(codec.encode(msg)) == msg
    assert _ints_in_range(msgspec.to_builtins(msg))


def _ints_in_range(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= MAX_ID
    if isinstance(value, list):
        return all(_ints_in_range(v) for v in value)
    if isinstance(value, dict):
        return all(_ints_in_range(v) for v in value.values())
    return True


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | near_json())
def test_arbitrary_bytes(payload: bytes) -> None:
    _decodes_to_a_message_or_a_400(payload)


@settings(max_examples=150, deadline=None)
@given(json_values() | json_objects_with(FIELDS))
def test_arbitrary_json(value: object) -> None:
    _decodes_to_a_message_or_a_400(json.dumps(value).encode())


@settings(max_examples=150, deadline=None)
@given(corrupted(json_objects_with(FIELDS)))
def test_arbitrary_json_with_arbitrary_bytes_in_it(payload: bytes) -> None:
    _decodes_to_a_message_or_a_400(payload)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FIELDS), st.integers(min_value=-(2**70), max_value=2**70))
def test_any_integer_in_any_field(field: str, number: int) -> None:
    payload = json.dumps({"msgType": 0, field: number}).encode()
    _decodes_to_a_message_or_a_400(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"msgType":3,"toUserId":2,"msgIdClient":"m1","body":"\xff"}',
        b'{"msgType":3,"toUserId":' + b"9" * 5000 + b',"msgIdClient":"m1"}',
        b'{"msgType":3,"toUserId":1e400,"msgIdClient":"m1"}',
        b'{"msgType":"x","msgIdClient":"m1"}',
    ],
)
def test_a_refusal_names_the_message_whatever_else_was_wrong(payload: bytes) -> None:
    """Outside testing of issue 9: the id was lost when another field was not UTF-8 or not a
    number the server can hold."""
    with pytest.raises(ImError) as refused:
        codec.decode(payload)
    assert refused.value.code == 400 and refused.value.msg_id_client == "m1"


def test_a_lone_surrogate_escape_is_refused_for_what_it_is() -> None:
    """msgspec calls it "Input data was truncated"; the peer is told what is wrong."""
    with pytest.raises(ImError) as refused:
        codec.decode(b'{"msgType": 3, "body": "\\ud800"}')
    assert refused.value.code == ErrorCode.BAD_REQUEST
    assert "surrogate" in refused.value.reason


@pytest.mark.parametrize(
    ("payload", "echoed"),
    [
        (b'{"msgType":3,"msgIdClient":"ls","body":"\\udc00x"}', "ls"),
        (b'{"msgType":3,"body":"\\ud800","msgIdClient":"after"}', "after"),
        (b'{"msgType":3,"msgIdClient":"ok","body":"\\ud83d\\ude00\\udc00"}', "ok"),
        (b'{"msgType":3,"msgIdClient":"l\\ud800s","body":"x"}', None),  # the id itself
    ],
)
def test_a_lone_surrogate_elsewhere_still_echoes_the_msg_id_client(
    payload: bytes, echoed: str | None
) -> None:
    """Found by an outside tester: invalid UTF-8 in the body echoed the id, half a surrogate
    pair did not (msgspec refuses it even in a field it skips)."""
    with pytest.raises(ImError) as refused:
        codec.decode(payload)
    assert refused.value.code == ErrorCode.BAD_REQUEST
    assert refused.value.msg_id_client == echoed
