"""The one code path for every decoded message, whichever transport it came on.

A registry maps each ``msgType`` to its handler. A handler either finishes at once (returns
None) or returns an awaitable; the gateway reads nothing more from that connection until it
is done, so one connection's messages are handled in the order they were sent. A request's
``msgIdClient`` is echoed on its answer and on its errors, so clients can match them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from imhub.protocol.errors import ErrorCode, ImError
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.sessions import Session
from imhub.storage.outage import UNAVAILABLE, OutageLog

log = logging.getLogger(__name__)

Handler = Callable[[Session, ImMsg], Coroutine[Any, Any, None] | None]

# Types a connection may send before it has logged in.
BEFORE_LOGIN = frozenset({MsgType.HEARTBEAT, MsgType.LOGIN})


class Dispatcher:
    def __init__(self, handlers: dict[MsgType, Handler]) -> None:
        self._handlers = handlers
        self._outage = OutageLog(log)

    def handle(self, session: Session, msg: ImMsg) -> Awaitable[None] | None:
        """Handle one message; refusals become error frames on this connection only."""
        try:
            handler = self._handlers.get(msg.msg_type)  # type: ignore[call-overload]
            if handler is None:
                raise ImError(ErrorCode.BAD_REQUEST, f"unknown msgType {msg.msg_type}")
            if session.user_id is None and msg.msg_type not in BEFORE_LOGIN:
                raise ImError(ErrorCode.UNAUTHORIZED, "log in first")
            if (
                msg.from_user_id is not None
                and session.user_id is not None
                and msg.from_user_id != session.user_id
            ):
                raise ImError(ErrorCode.FORBIDDEN, "fromUserId is not the logged-in user")
            session.request_id = msg.msg_id_client
            pending = handler(session, msg)
        except ImError as exc:
            self.refuse(session, exc, msg)
            pending = None
        except Exception as exc:  # this message fails, the connection goes on
            self.refuse(session, self._failed(exc, msg), msg)
            pending = None
        if pending is None:
            session.request_id = None
            return None
        return self._guard(session, msg, pending)

    async def _guard(
        self, session: Session, msg: ImMsg, pending: Coroutine[Any, Any, None]
    ) -> None:
        try:
            await pending
        except ImError as exc:
            self.refuse(session, exc, msg)
        except Exception as exc:
            self.refuse(session, self._failed(exc, msg), msg)
        finally:
            session.request_id = None

    def _failed(self, exc: Exception, msg: ImMsg) -> ImError:
        """A 500 either way: the database being away is one line now and then; anything
        else is a bug, logged with its traceback."""
        if self._outage.note(exc):
            return ImError(ErrorCode.INTERNAL, UNAVAILABLE)
        log.error("handler for msgType %s failed", msg.msg_type, exc_info=exc)
        return ImError(ErrorCode.INTERNAL, "internal error")

    @staticmethod
    def refuse(session: Session, exc: ImError, msg: ImMsg | None = None) -> None:
        mid = exc.msg_id_client or (msg.msg_id_client if msg is not None else None)
        session.error(exc.code, exc.reason, mid)
        if exc.close:
            session.ended = (exc.code, exc.reason)
            session.close()
