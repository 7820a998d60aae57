"""Per-conversation ordering and de-duplication of what reaches the application (no I/O).

Each conversation has a cursor: the highest sequence number released. A message at cursor + 1
is released, with any that were waiting right behind it; one at or below the cursor is a
duplicate; one further ahead waits, and the gap is reported so the client can sync.

A conversation seen for the first time has no cursor: only a sync page may start it (the
server starts unnamed conversations at the user's read position), or the conversation list
of a finished sync. Until then what arrives for it waits, and it counts as a gap; the start
is never after a live message waiting (see ``_first``).

Every method that moves a cursor returns the steps it took, ``(seq, item)`` in order, where
``item`` is ``None`` for a position that is filled but has nothing to hand over (a message
this client sent itself, or the start of a conversation): the caller needs each step to know
how far the application has been handed each conversation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Step = tuple[int, T | None]


@dataclass
class Ordering(Generic[T]):
    cursors: dict[int, int] = field(default_factory=dict)
    waiting: dict[int, dict[int, T | None]] = field(default_factory=dict)

    def accept(self, conv: int, seq: int, item: T | None, start: bool = False) -> list[Step[T]]:
        """Take ``item`` at ``seq`` (``None``: a message this client sent itself, not to be
        handed over) and return the steps released, in order. ``start``: the item comes from
        a sync page, which may start a conversation this client did not know."""
        steps: list[Step[T]] = []
        cursor = self.cursors.get(conv)
        if cursor is None and start:
            cursor = self.cursors[conv] = self._first(conv, seq) - 1
            steps.append((cursor, None))
        if cursor is not None and seq <= cursor:
            return steps
        self.waiting.setdefault(conv, {})[seq] = item
        return steps + self._drain(conv)

    def _drain(self, conv: int) -> list[Step[T]]:
        cursor = self.cursors.get(conv)
        pending = self.waiting.get(conv)
        if cursor is None or not pending:
            return []
        for seq in [s for s in pending if s <= cursor]:
            del pending[seq]
        out: list[Step[T]] = []
        while cursor + 1 in pending:
            cursor += 1
            out.append((cursor, pending.pop(cursor)))
        self.cursors[conv] = cursor
        if not pending:
            del self.waiting[conv]
        return out

    def positions(self) -> dict[int, int]:
        """Where a sync should start each conversation: after its cursor. A conversation not
        started yet is left out: the server starts it at the user's read position."""
        return dict(self.cursors)

    def forget(self, conv: int) -> None:
        """Stop following a conversation (the server refused it: not ours)."""
        self.cursors.pop(conv, None)
        self.waiting.pop(conv, None)

    def gaps(self) -> list[int]:
        """Conversations with messages waiting behind a missing one (or not started yet)."""
        return list(self.waiting)

    def know(self, positions: Iterable[tuple[int, int]]) -> list[tuple[int, list[Step[T]]]]:
        """Start the cursors of conversations not started yet, from a finished sync's list
        (where nothing was missing below these positions); returns, per conversation
        started, the steps: the start itself and what it releases."""
        out: list[tuple[int, list[Step[T]]]] = []
        for conv, seq in positions:
            if conv not in self.cursors:
                start = self.cursors[conv] = self._first(conv, seq + 1) - 1
                out.append((conv, [(start, None), *self._drain(conv)]))
        return out

    def skip(self, conv: int, seq: int) -> list[Step[T]]:
        """Nothing at or below ``seq`` is to be handed over (a group membership that began
        after it): a cursor behind it moves there, releasing what waits behind it."""
        cursor = self.cursors.get(conv)
        if cursor is None or cursor >= seq:
            return []
        self.cursors[conv] = seq
        return [(seq, None), *self._drain(conv)]

    def _first(self, conv: int, seq: int) -> int:
        """Where a conversation starts: at ``seq``, the server's start, or earlier at the
        first live message waiting for it. (The server may start after messages this client
        was sent live: a connection showing the conversation reads them at once.)"""
        waiting = self.waiting.get(conv)
        return min(seq, min(waiting)) if waiting else seq
