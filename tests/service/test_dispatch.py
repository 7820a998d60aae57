"""The dispatcher: whatever a handler does, the outcome is an answer or an error frame."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imhub.protocol.errors import ErrorCode
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.dispatch import Dispatcher, Handler
from imhub.service.sessions import Session


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def close(self) -> None: ...


def broken(session: Session, msg: ImMsg) -> None:
    raise KeyError("a bug")


def fine(session: Session, msg: ImMsg) -> None:
    session.reply(ImMsg(msg_type=MsgType.HEARTBEAT, code=ErrorCode.OK))


async def broken_later(session: Session, msg: ImMsg) -> None:
    raise KeyError("a bug")


@pytest.mark.parametrize("handler", [broken, broken_later], ids=["at-once", "awaited"])
async def test_a_handler_that_fails_costs_one_500_and_nothing_else(
    handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = Dispatcher({MsgType.HEARTBEAT: handler, MsgType.UNREAD: fine})
    outlet = Recorder()
    session = Session(outlet, 0.0)
    session.user_id = 1
    pending = dispatcher.handle(session, ImMsg(msg_type=MsgType.HEARTBEAT, msg_id_client="m1"))
    if pending is not None:
        await pending
    assert outlet.sent == [
        {"msgType": 8, "code": 500, "reason": "internal error", "msgIdClient": "m1"}
    ]
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info  # ours: logged in full
    assert session.request_id is None and not session.closed
    dispatcher.handle(session, ImMsg(msg_type=MsgType.UNREAD))
    assert outlet.sent[-1] == {"msgType": 0, "code": 0}  # no stale msgIdClient either
