"""Login outcomes as metrics and log lines, around ``LoginService.login`` (kept apart, so the
login's rules stay alone in ``login.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from imhub.metrics import Metrics
from imhub.protocol.errors import ImError
from imhub.protocol.messages import ImMsg
from imhub.service.sessions import Session, log_fields

log = logging.getLogger("imhub.service.login")

Login = Callable[[Session, ImMsg], Coroutine[Any, Any, None]]


def audited(login: Login, metrics: Metrics) -> Login:
    """``login``, counted (ok / refused) and logged with the connection it came on."""

    async def audited_login(session: Session, msg: ImMsg) -> None:
        try:
            await login(session, msg)
        except ImError as exc:
            metrics.logins_refused += 1
            if log.isEnabledFor(logging.INFO):
                log.info("login refused", extra={**log_fields(session), "reason": exc.reason})
            raise
        if session.user_id is not None:
            metrics.logins_ok += 1
            if log.isEnabledFor(logging.INFO):
                extra = {**log_fields(session), "client_type": session.client_type}
                log.info("logged in", extra=extra)

    return audited_login
