"""Log lines: one per event, as text or as JSON (``--log-format``), carrying the context the
caller passes as ``extra`` (a connection's ``conn``, ``user`` and ``remote``, a close's
``reason``, …) as fields, so a log collector can filter by them instead of parsing messages.

The per-request HTTP access log is off by default (``--access-log``): probes and scrapes would
otherwise write a line every few seconds each.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What every record has; anything else on a record came from ``extra`` and is a field.
_STANDARD = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime"]
)
_encoder = msgspec.json.Encoder(enc_hook=str)
# What a terminal or a line splitter takes for a break or a command: C0 and C1 controls, DEL,
# and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields the caller gave with ``extra``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """The usual line, then ``key=value`` for each field (values with spaces quoted)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One event, one line: a message that quotes a peer (a request path) cannot start
        # a forged line of its own.
        record.message = _CONTROL.sub(_escaped, record.message)
        line = super().formatMessage(record)
        for key, value in fields(record).items():
            text = _CONTROL.sub(_escaped, str(value))
            if not text or " " in text or '"' in text or "=" in text:
                text = _encoder.encode(text).decode()
            line += f" {key}={text}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, msg, the fields, and a traceback
    as one string (``exc``), so an event never spans lines."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(out).decode()


def configure(level: str, fmt: str) -> None:
    """Send every log line to stderr in ``fmt`` ("text" or "json") from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class NodeField(logging.Filter):
    """Names the cluster node on every line (``node=<id>``): the nodes of ``--workers`` share
    one stderr, and connection ids are only unique within a node."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def name_node(node: str) -> None:
    """Add ``NodeField`` to the handlers ``configure`` made."""
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, NodeField)]:
            handler.removeFilter(old)  # one per handler, the newest app's
        handler.addFilter(NodeField(node))


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log as one event per request, with its parts as fields."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d",
            request.method,
            request.path,
            response.status,
            extra={
                "remote": request.remote,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "seconds": round(time, 6),
                "bytes": response.body_length,
            },
        )


class LogLimiter:
    """At most ``burst`` lines per ``interval`` seconds; the lines over it are counted, and the
    next line let through says how many were left out."""

    __slots__ = ("_burst", "_clock", "_dropped", "_interval", "_start", "_used")

    def __init__(self, burst: int, interval: float, clock: Callable[[], float]) -> None:
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._start = float("-inf")
        self._used = 0
        self._dropped = 0

    def allow(self) -> int | None:
        """None to leave this line out; otherwise how many were left out since the last one."""
        now = self._clock()
        if now - self._start >= self._interval:
            self._start, self._used = now, 0
        if self._used >= self._burst:
            self._dropped += 1
            return None
        self._used += 1
        dropped, self._dropped = self._dropped, 0
        return dropped
