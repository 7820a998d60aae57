"""How events reach the application, and when it has finished with them.

Two ways to consume, usable together: listeners (called as each event happens) and the
``events()`` iterator (a queue). An event counts as handed over when every listener has
returned and, if the queue holds it, when the application has asked ``events()`` for the next
one (or stopped iterating). ``taken(upto)`` reports how far that is, by event number, so the
session can save the cursors up to there and no further.

The queue keeps events only while someone may read it: always once ``events()`` has been
called, and before that only while no listener is registered. A listener added later is
first given what the queue holds (nobody else would ever take it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

from imhub.client.events import Event

log = logging.getLogger("imhub.client")


class Handover:
    def __init__(self, taken: Callable[[int], None], closed: Callable[[], bool]) -> None:
        """``taken(upto)``: the application has finished with events up to number ``upto``;
        ``closed()``: no more events will come."""
        self._on_taken = taken
        self._closed = closed
        self._listeners: list[Callable[[Event], None]] = []
        self._queue: deque[tuple[int, Event]] = deque()
        self._iterating = False  # events() has been called
        self._yielded = 0  # the event events() gave last, until the application asks again
        self._last = 0  # number of the last event handed
        self._wake = asyncio.Event()

    def hand(self, event: Event, number: int) -> None:
        self._last = number
        self._call_listeners(event)
        if self._iterating or not self._listeners:
            self._queue.append((number, event))
            self._wake.set()
        self._taken()

    def wake(self) -> None:
        """Let a waiting ``events()`` see that the client has closed."""
        self._wake.set()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)
        if not self._iterating:
            while self._queue:
                self._call_listeners(self._queue.popleft()[1])
            self._taken()

    async def events(self) -> AsyncIterator[Event]:
        self._iterating = True
        self._yielded = 0
        try:
            while True:
                if self._queue:
                    number, event = self._queue.popleft()
                    self._yielded = number
                    yield event
                    self._yielded = 0
                    self._taken()
                elif self._closed():
                    return
                else:
                    self._wake.clear()
                    await self._wake.wait()
        finally:
            if self._yielded:  # stopped iterating: done with the last one
                self._yielded = 0
                self._taken()

    def _call_listeners(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    def _taken(self) -> None:
        held = [n for n in (self._yielded, self._queue[0][0] if self._queue else 0) if n]
        self._on_taken(min(held) - 1 if held else self._last)
