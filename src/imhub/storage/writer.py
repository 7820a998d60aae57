"""The batched writer: every write that must be ordered goes through one queue and one task.

Jobs that arrive together are applied in one transaction and committed once, which lifts the
ceiling of one commit per message (about a thousand a second on any of our databases). Each
job's ``done`` callback runs only after its batch committed, in submission order, so a
``chat_answer`` always follows the durable write and deliveries keep the order of sends.
If a batch fails, its jobs are retried one by one, so one bad job fails alone.

With several writers on one database (PostgreSQL, MySQL/MariaDB), a batch first locks every
row it will need in one global order (``locks.RowLocks``, given as ``lock_rows``), so two
writers never wait on each other in a circle.

What the write path keeps in memory between batches lives in ``staged.Staged`` caches of one
``Transaction``: the writer folds their pending entries in after each commit and drops them
after any failure, so a batch that did not commit leaves no trace in memory either.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Generic, Protocol, TypeGuard, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.bulk import commit_sqlite
from imhub.storage.database import transient
from imhub.storage.outage import UNAVAILABLE, OutageLog, unavailable
from imhub.storage.staged import Transaction

log = logging.getLogger(__name__)

TRANSIENT_RETRIES = 5  # tries of a batch that meets another writer (deadlock, lock timeout)
RETRY_PAUSE = 0.005  # seconds before the second try; doubled each time, with jitter
# On PostgreSQL and MySQL/MariaDB: the seconds one try of a batch may take before its writes
# are answered with a retryable 500 (a batch takes milliseconds; a deadlock costs the
# database's detection time, 1 s by default on PostgreSQL), and the seconds closing a
# connection may take after that.
BATCH_DEADLINE = 10.0
CLOSE_WITHIN = 2.0

T = TypeVar("T")
R = TypeVar("R")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class WriteKind(Protocol[T_contra, R_co]):
    """One kind of write, applied to a run of consecutive jobs of that kind in one statement
    set. Returns one result per item, in order; a refused item's result is an ``ImError``."""

    async def run(
        self, conn: AsyncConnection, items: Sequence[T_contra]
    ) -> Sequence[R_co | ImError]: ...


async def each(items: Sequence[T], apply: Callable[[T], Awaitable[R]]) -> list[R | ImError]:
    """For kinds whose items are applied one at a time: a refusal is that item's result."""
    results: list[R | ImError] = []
    for item in items:
        try:
            results.append(await apply(item))
        except ImError as exc:
            results.append(exc)
    return results


@dataclass(slots=True)
class _Job(Generic[T, R]):
    kind: WriteKind[T, R]
    item: T
    done: Callable[[R | ImError], None]


def _kind(job: _Job[Any, Any]) -> WriteKind[Any, Any]:
    return job.kind


class _Stale(Exception):
    """A batch failed because the connection kept from an earlier batch had died meanwhile,
    before its COMMIT was sent: nothing of it was stored, and it may be tried again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


def _dead(exc: BaseException) -> TypeGuard[Exception]:
    """A failure that a dead connection shows (at once), not a hang nor a cancellation."""
    return isinstance(exc, Exception) and not isinstance(exc, TimeoutError)


class BatchWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        tx: Transaction,
        batch_max: int = 512,
        between_batches: Callable[[AsyncConnection], Awaitable[None]] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        lock_rows: Callable[[AsyncConnection, list[tuple[Any, list[Any]]]], Awaitable[None]]
        | None = None,
        deadline: float | None = None,
    ) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._tx = tx
        self._batch_max = batch_max
        # Upkeep that must run on the writer's connection while no batch is open (the end of
        # a WAL checkpoint, ``storage.database.Checkpointer``).
        self._between_batches = between_batches
        self._on_batch = on_batch  # (writes, seconds to apply and commit them): for metrics
        # Shared databases: locks the rows of a batch's runs of (kind, items) before they run.
        self._lock_rows = lock_rows
        # When the last batch was committed (perf_counter), read by its callbacks: one clock
        # reading per batch instead of one per message.
        self.batch_done = 0.0
        self._queue: deque[_Job[Any, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The writer's own connection, kept between batches: checking one out of the pool
        # and resetting it on return cost more than a small batch's writes.
        self._conn: AsyncConnection | None = None
        # Seconds one try of a batch may take (a database server that hangs without closing
        # its sockets would otherwise hold every send unanswered); None on SQLite, whose
        # statements run in a thread that a timeout could not stop.
        self._deadline = deadline
        self._outage = OutageLog(log)  # while the database is away: a line per 10 s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="imhub-writer")

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch."""
        return len(self._queue)

    def submit(self, kind: WriteKind[T, R], item: T, done: Callable[[R | ImError], None]) -> None:
        """Queue a write; ``done`` gets its result after the commit (or the refusal)."""
        if self._closing:
            done(ImError(ErrorCode.SHUTTING_DOWN, "server is shutting down"))
            return
        self._queue.append(_Job(kind, item, done))
        self._wakeup.set()

    async def call(
        self, kind: WriteKind[T, R], item: T, on_commit: Callable[[R], None] | None = None
    ) -> R:
        """Queue a write and wait for its result; raises the ``ImError`` of a refusal.

        ``on_commit`` runs right after the commit, in write order with every other job's
        callback: deliveries that must keep the order of sequence numbers belong there, not
        after the ``await``, when later writes may already have been delivered."""
        fut: asyncio.Future[R | ImError] = asyncio.get_running_loop().create_future()

        def resolve(result: R | ImError) -> None:
            if on_commit is not None and not isinstance(result, ImError):
                on_commit(result)
            if not fut.done():
                fut.set_result(result)

        self.submit(kind, item, resolve)
        result = await fut
        if isinstance(result, ImError):
            raise result
        return result

    async def close(self) -> None:
        """Apply what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        await self._disconnect()

    async def _disconnect(self, invalidate: bool = False) -> None:
        """Give the connection back, or (``invalidate``: it met a lost database) have the pool
        discard it rather than reset a dead connection and hand it out again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                async with asyncio.timeout(CLOSE_WITHIN):  # a hung server never answers
                    if invalidate:
                        await conn.invalidate()
                    await conn.close()
            except Exception:  # a broken connection: the pool discards it anyway
                log.warning("closing the writer's connection failed", exc_info=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            n = min(len(self._queue), self._batch_max)
            jobs = [self._queue.popleft() for _ in range(n)]
            began = time.perf_counter()
            try:
                results = await self._apply_retrying(jobs)
            except Exception as exc:
                if self._outage.note(exc, n):  # every job would fail alike: refuse all now
                    results = [ImError(ErrorCode.INTERNAL, UNAVAILABLE)] * n
                else:
                    log.warning("batch of %d writes failed (%r); retrying them one by one", n, exc)
                    results = [await self._apply_alone(job) for job in jobs]
            self.batch_done = time.perf_counter()
            if self._on_batch is not None:
                self._on_batch(n, self.batch_done - began)
            for job, result in zip(jobs, results, strict=True):
                try:
                    job.done(result)
                except Exception:
                    log.exception("write callback failed")
            if self._between_batches is not None and self._conn is not None:
                try:
                    await self._between_batches(self._conn)
                except Exception:
                    log.exception("upkeep between batches failed")

    async def _apply(self, jobs: list[_Job[Any, Any]]) -> list[Any]:
        """One transaction; the caches keep what it wrote only if it committed."""
        tx = self._tx
        assert tx.clean, "a transaction began with uncommitted cache entries"
        results: list[Any] = []
        held = self._conn is not None  # kept from an earlier batch: not checked since
        committing = False
        try:
            async with asyncio.timeout(self._deadline):
                if self._conn is None:
                    self._conn = await self._engine.connect()  # pre-pinged by the pool
                conn = self._conn
                runs = [(k, [j.item for j in run]) for k, run in groupby(jobs, key=_kind)]
                if self._sqlite:  # pysqlite begins at the first write (``commit_sqlite``)
                    for kind, items in runs:
                        results.extend(await kind.run(conn, items))
                    await commit_sqlite(conn)
                else:
                    async with conn.begin() as trans:
                        if self._lock_rows is not None:
                            await self._lock_rows(conn, runs)  # before anything locks a row
                        for kind, items in runs:
                            results.extend(await kind.run(conn, items))
                        committing = True  # from here the database may have committed
                        await trans.commit()
        except BaseException as exc:  # any failure, cancellation included: nothing was written
            tx.discard()
            lost = not self._sqlite and unavailable(exc)
            await self._disconnect(invalidate=lost)  # the next try starts on a fresh connection
            if lost and held and not committing and _dead(exc):
                # The connection died while it waited between batches (the database
                # restarted): no COMMIT was sent, so nothing was stored; try again at once on
                # a connection the pool checks first. (A database that hangs is no dead
                # connection: its sends are answered within one deadline, not two.)
                raise _Stale(exc) from exc
            raise
        tx.commit()
        return results

    async def _apply_retrying(self, jobs: list[_Job[Any, Any]]) -> list[Any]:
        """``_apply``, tried again as a whole (a few times, with a growing pause) when another
        writer on the database was in the way: a deadlock, a lock timeout, a serialization
        failure. Nothing of a failed try is kept, so the next one starts afresh."""
        for attempt in range(TRANSIENT_RETRIES):
            try:
                try:
                    return await self._apply(jobs)
                except _Stale as stale:
                    log.info("the writer's connection was gone (%r); a fresh one", stale.error)
                    return await self._apply(jobs)  # a fresh connection: not _Stale again
            except Exception as exc:
                if not transient(exc) or attempt == TRANSIENT_RETRIES - 1:
                    raise
                log.info("batch of %d writes met another writer (%r); again", len(jobs), exc)
                await asyncio.sleep(RETRY_PAUSE * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def _apply_alone(self, job: _Job[Any, Any]) -> Any:
        try:
            return (await self._apply_retrying([job]))[0]
        except Exception as exc:
            if self._outage.note(exc):
                return ImError(ErrorCode.INTERNAL, UNAVAILABLE)
            log.error("write failed: %r", exc)
            return ImError(ErrorCode.INTERNAL, "storage failed; nothing was stored, retry")
