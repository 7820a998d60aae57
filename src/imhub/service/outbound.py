"""How stored rows look on the wire: the one place that builds delivered messages."""

from __future__ import annotations

from imhub.protocol.messages import ImMsg, MsgType
from imhub.storage.chats import MsgRow
from imhub.storage.notices import NoticeRow


def person_message(msg_type: MsgType, row: MsgRow) -> ImMsg:
    """A one-to-one message as ``chat`` (3, the connection shows that chat) or ``notice`` (7)."""
    return ImMsg(
        msg_type=msg_type,
        chat_id=row.chat_id,
        from_user_id=row.from_user_id,
        to_user_id=row.to_user_id,
        from_client_type=row.client_type,
        msg_id_client=row.msg_id_client,
        msg_id_server=row.msg_id_server,
        body_type=row.body_type,
        body=row.body,
        send_time=row.send_time,
        time=row.voice_time or None,
    )


def notice_message(row: NoticeRow) -> ImMsg:
    """A notice from a backend (``fromUserId`` 0) or a user; the same bytes for every target."""
    return ImMsg(
        msg_type=MsgType.NOTICE,
        notice_id=row.notice_id,
        from_user_id=row.from_user_id,
        body_type=row.body_type,
        body=row.body,
        send_time=row.send_time,
    )
