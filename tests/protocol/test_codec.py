import pytest

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import MAX_ID, ImMsg, MsgType, UnreadChat


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
