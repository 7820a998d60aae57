"""Per-conversation ordering and de-duplication of what reaches the application (no I/O).

Each conversation has a cursor: the highest sequence number handed over. A message at
cursor + 1 goes out, with any that were waiting right behind it; one at or below the cursor
is a duplicate; one further ahead waits, and the gap is reported so the client can sync.
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

    def accept(self, conv: int, seq: int, item: T | None) -> list[T]:
        """Take ``item`` (``None``: a message this client sent itself, not to be handed over)
        and return what may now be handed over, in order."""
        cursor = self.cursors.get(conv)
        if cursor is None:  # first sight: the server starts us where we should start
            cursor = self.cursors[conv] = seq - 1
        if seq <= cursor:
            return []
        pending = self.waiting.setdefault(conv, {})
        pending[seq] = item
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

    def gaps(self) -> list[int]:
        """Conversations with messages waiting behind a missing one."""
        return list(self.waiting)

    def know(self, positions: Iterable[tuple[int, int]]) -> None:
        """Start cursors of conversations seen for the first time (from a sync's list)."""
        for conv, seq in positions:
            self.cursors.setdefault(conv, seq)
