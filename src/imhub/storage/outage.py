"""Telling a database that cannot be reached (or a SQLite file that cannot be written)
apart from a bug.

While the database is down (stopped, restarting, the network to it cut) every statement
fails. That is not a fault of the request, and a traceback per request would bury the one
line that matters, so the callers answer such failures with a retryable 500 and log one
rate-limited line (``imhub.logs.LogLimiter``); anything else is still a bug with its
traceback. The pool reconnects by itself (``pool_pre_ping``), so nothing here waits.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from imhub.logs import LogLimiter

UNAVAILABLE = "storage unavailable; nothing was stored, retry"

# PostgreSQL SQLSTATE classes: 08 connection exception; 57P01-57P03 the server shutting down,
# crashed, or still starting.
_PG_DOWN = ("08", "57P")
# MySQL/MariaDB error numbers: server shutdown (1053), connection killed (1927), cannot
# connect (2002, 2003), server gone away (2006), connection lost (2013, 2055).
_MYSQL_DOWN = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})
# SQLite primary result codes of a file that cannot be written or read: I/O error (a full
# disk shows as one too, as may a file size limit), disk full, cannot open. Every statement
# fails alike until the operator acts: an outage, not a bug of the request.
_SQLITE_DOWN = frozenset({10, 13, 14})  # SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (or the link to it broke),
    rather than that a statement was wrong. Looks at ``exc`` and at the error it wraps."""
    orig = getattr(exc, "orig", None)
    for err in (exc, exc.__cause__, orig, getattr(orig, "__cause__", None)):
        if err is None:
            continue
        if isinstance(err, OSError | PoolTimeout):  # refused, reset, timed out; pool empty
            return True
        # Raw from the writer's statements (run on the loop's thread), or wrapped.
        if isinstance(err, sqlite3.Error) and err.sqlite_errorcode & 0xFF in _SQLITE_DOWN:
            return True
        if isinstance(err, DBAPIError):
            if err.connection_invalidated or isinstance(err.orig, OSError):
                return True
            state = getattr(err.orig, "sqlstate", None) or getattr(err.orig, "pgcode", None)
            if isinstance(state, str) and state.startswith(_PG_DOWN):
                return True
            args = tuple(getattr(err.orig, "args", ()))
            if args and args[0] in _MYSQL_DOWN:
                return True
    return False


class OutageLog:
    """Says that the database is away at most once per ``interval`` seconds, with how many
    requests failed for it since the last line; one per component that meets the outage."""

    def __init__(
        self, logger: logging.Logger, interval: float = 10.0, failed: str = "requests answered 500"
    ) -> None:
        self._log = logger
        self._what = failed  # what the count counts, for the log line
        self._limiter = LogLimiter(1, interval, time.monotonic)
        self._failed = 0

    def note(self, exc: BaseException, requests: int = 1) -> bool:
        """True (and counted, maybe logged) if ``exc`` is the database being away; False for
        anything else, which the caller reports as the bug it is."""
        if not unavailable(exc):
            return False
        self._failed += requests
        if self._limiter.allow() is not None:
            self._log.warning(
                "database unavailable (%s): %d %s since the last such line",
                type(exc.__cause__ or exc).__name__,
                self._failed,
                self._what,
            )
            self._failed = 0
        return True
