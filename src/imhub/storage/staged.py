"""Caches that cannot go stale: what a transaction writes to them counts only once it commits.

The writer keeps state between batches (sequence counters, pair → chat ids, group members,
users known to exist) so that the hot path asks the database little. A batch that rolls back
must leave no trace in that state, whatever made it fail (a constraint, the driver, a value out
of range, a full disk, cancellation). Undoing by hand is easy to get wrong (a cache that forgets
to register its hook keeps rows that were never committed), so no cache is changed in place:
each ``Staged`` map writes into a pending layer of the open transaction, and the writer folds
every pending layer in after its commit, or drops them all on any failure (``Transaction``).
Readers outside the writer see committed entries only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class Transaction:
    """The writer's open transaction, as the caches see it: which of them hold pending
    entries. One per writer; ``commit`` after the database committed, ``discard`` after
    anything else."""

    def __init__(self) -> None:
        self._touched: dict[int, Staged[object, object]] = {}
        self._scratch: list[Callable[[], None]] = []
        self._undo: list[Callable[[], None]] = []

    def on_discard(self, undo: Callable[[], None]) -> None:
        """For the one effect a write must have before its commit (a session registered at
        its place in the write stream, so that writes queued after it see it): ``undo`` runs
        if this transaction does not commit. Anything else waits for the commit."""
        self._undo.append(undo)

    def scratch(self, clear: Callable[[], None]) -> None:
        """Register working state that lives for one transaction only: ``clear`` runs at
        every commit and every discard."""
        self._scratch.append(clear)

    def touch(self, cache: Staged[K, V]) -> None:
        self._touched[id(cache)] = cache  # type: ignore[assignment]

    def commit(self) -> None:
        touched, self._touched = self._touched, {}
        for cache in touched.values():
            cache._fold()
        self._undo.clear()
        self._end()

    def discard(self) -> None:
        touched, self._touched = self._touched, {}
        for cache in touched.values():
            cache._pending.clear()
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()
        self._end()

    def _end(self) -> None:
        for clear in self._scratch:
            clear()

    @property
    def clean(self) -> bool:
        """No cache holds anything uncommitted."""
        return not self._touched and not self._undo


class Staged(Generic[K, V]):
    """A bounded map with a pending layer: reads and writes inside the writer's transaction see
    and write pending entries over committed ones; ``committed`` is what outside readers may
    trust. When the committed map would grow past ``limit`` it starts over (it is a cache:
    a miss costs a query, never a wrong answer)."""

    __slots__ = ("_committed", "_limit", "_pending", "_tx")

    def __init__(self, tx: Transaction, limit: int) -> None:
        self._tx = tx
        self._limit = limit
        self._committed: dict[K, V] = {}
        self._pending: dict[K, V] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._pending or key in self._committed

    def __getitem__(self, key: K) -> V:
        """Inside the writer: the pending entry, else the committed one."""
        found = self._pending.get(key, _MISSING)
        if found is _MISSING:
            return self._committed[key]
        return found  # type: ignore[return-value]

    def __setitem__(self, key: K, value: V) -> None:
        if not self._pending:
            self._tx.touch(self)
        self._pending[key] = value

    def update(self, items: Iterable[tuple[K, V]]) -> None:
        for key, value in items:
            self[key] = value

    def committed(self, key: K) -> V | None:
        """Outside the writer: only what a committed transaction wrote or read."""
        return self._committed.get(key)

    def has_committed(self, key: K) -> bool:
        return key in self._committed

    def forget(self, key: K | None = None) -> None:
        """Drop ``key`` (None: everything) from the map, committed and pending: the next use
        reads the database again. For entries another process may have changed."""
        if key is None:
            self._committed.clear()
            self._pending.clear()
        else:
            self._committed.pop(key, None)
            self._pending.pop(key, None)

    def _fold(self) -> None:
        if len(self._committed) + len(self._pending) > self._limit:
            self._committed.clear()
        self._committed.update(self._pending)
        self._pending.clear()
