"""Per-conversation ordering and de-duplication of what reaches the application (no I/O).

Each conversation has a cursor: the highest sequence number handed over. A message at
cursor + 1 goes out, with any that were waiting right behind it; one at or below the cursor
is a duplicate; one further ahead waits, and the gap is reported so the client can sync.

A conversation seen for the first time has no cursor: only a sync page may start it (the
server starts unnamed conversations at the user's read position), or the conversation list
of a finished sync. Until then what arrives for it waits, and it counts as a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Ordering(Generic[T]):
    cursors: dict[int, int] = field(default_factory=dict)
    waiting: dict[int, dict[int, T | None]] = field(default_factory=dict)

    def accept(self, conv: int, seq: int, item: T | None, start: bool = False) -> list[T]:
        """Take ``item`` (``None``: a message this client sent itself, not to be handed over)
        and return what may now be handed over, in order. ``start``: the item comes from a
        sync page, which may start a conversation this client did not know."""
        cursor = self.cursors.get(conv)
        if cursor is None and start:
            cursor = self.cursors[conv] = seq - 1
        if cursor is not None and seq <= cursor:
            return []
        self.waiting.setdefault(conv, {})[seq] = item
        return self._drain(conv)

    def _drain(self, conv: int) -> list[T]:
        cursor = self.cursors.get(conv)
        pending = self.waiting.get(conv)
        if cursor is None or not pending:
            return []
        for seq in [s for s in pending if s <= cursor]:
            del pending[seq]
        out: list[T] = []
        while cursor + 1 in pending:
            cursor += 1
            ready = pending.pop(cursor)
            if ready is not None:
                out.append(ready)
        self.cursors[conv] = cursor
        if not pending:
            del self.waiting[conv]
        return out

    def positions(self) -> dict[int, int]:
        """Where a sync should start each conversation: after its cursor; and a conversation
        not started yet that has live messages waiting, just before the first of them. (Those
        arrived because this client was online when they were stored, so nothing before them
        is missing; the server's read position is no guide: a connection showing the
        conversation has read them at once, before the client handed them over.)"""
        out = dict(self.cursors)
        for conv, pending in self.waiting.items():
            if conv not in out and pending:
                out[conv] = min(pending) - 1
        return out

    def forget(self, conv: int) -> None:
        """Stop following a conversation (the server refused it: not ours)."""
        self.cursors.pop(conv, None)
        self.waiting.pop(conv, None)

    def gaps(self) -> list[int]:
        """Conversations with messages waiting behind a missing one (or not started yet)."""
        return list(self.waiting)

    def know(self, positions: Iterable[tuple[int, int]]) -> list[T]:
        """Start the cursors of conversations not started yet, from a finished sync's list
        (where nothing was missing below these positions); returns what that releases."""
        out: list[T] = []
        for conv, seq in positions:
            if conv not in self.cursors:
                self.cursors[conv] = seq
                out += self._drain(conv)
        return out
