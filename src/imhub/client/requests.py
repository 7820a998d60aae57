"""Requests in flight on the current connection, each named by a fresh ``msgIdClient`` (the
server echoes it on the answer or the error) and bounded by a deadline. No I/O."""

from __future__ import annotations

import uuid
from typing import Any

from imhub.client.actions import Call, Handler
from imhub.protocol import codec


class Requests:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # s
        self._calls: dict[str, Call] = {}

    def __contains__(self, rid: object) -> bool:
        return rid in self._calls

    def open(
        self, request: dict[str, Any], handler: Handler | None, what: str, now: float, rid: str
    ) -> tuple[str, bytes]:
        """Register a request; returns its id and the message to write. ``handler``: the
        session's own continuation (``None``: the application's call)."""
        rid = rid or "q-" + uuid.uuid4().hex
        self._calls[rid] = Call(now + self.timeout, handler, what)
        return rid, codec.encode_json({**request, "msgIdClient": rid})

    def settle(self, rid: str) -> Call | None:
        return self._calls.pop(rid, None)

    def expired(self, now: float) -> list[tuple[str, Call]]:
        """The requests whose deadline has passed (removed)."""
        out = [(rid, c) for rid, c in self._calls.items() if c.deadline <= now]
        for rid, _ in out:
            del self._calls[rid]
        return out

    def take_all(self) -> list[tuple[str, Call]]:
        out, self._calls = list(self._calls.items()), {}
        return out

    def deadline(self) -> float | None:
        return min((c.deadline for c in self._calls.values()), default=None)


class Heartbeat:
    """When the next heartbeat is due and when the link counts as dead (the driver's clock,
    s): one goes out ``interval`` after the last answer; no answer within ``timeout`` of its
    being queued means the link is dead. The deadline starts when the heartbeat is queued,
    not when it leaves: behind a send buffer that a dead peer never empties it cannot leave,
    and that is the sign (so detection takes at most interval + timeout)."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._ping_at: float | None = None
        self._pong_due: float | None = None

    def start(self, now: float) -> None:
        self._ping_at, self._pong_due = now + self.interval, None

    def stop(self) -> None:
        self._ping_at = self._pong_due = None

    answered = start

    def due(self, now: float) -> str | None:
        """``"ping"``: send one now (its deadline starts); ``"dead"``: the link is dead."""
        if self._pong_due is not None:
            return "dead" if now >= self._pong_due else None
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at, self._pong_due = None, now + self.timeout
            return "ping"
        return None

    def deadline(self) -> float | None:
        return self._pong_due if self._pong_due is not None else self._ping_at
