"""Bulk statements for the hot write path: compiled once, sent as driver SQL with tuples.

SQLAlchemy's per-row parameter processing costs more than SQLite's own work for the simple
integers and strings of a message batch, and aiosqlite hands every cursor operation to its
thread and back. These helpers compile a Core statement once per dialect, give the driver
plain tuples (one ``executemany`` for updates, one multi-row ``INSERT … RETURNING`` for
inserts), and run a batch's writes in one hand-off (``Script``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

import aiosqlite
from sqlalchemy import Table, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

from imhub.storage.database import BUSY_TIMEOUT_MS

# Compiled statements by (id of the object they came from, dialect). The object is kept in the
# entry, so its id cannot be reused by another while the entry exists; callers pass objects
# that live as long as the module (statements and column lists defined at module level).
_compiled: dict[tuple[int, str], tuple[str, tuple[str, ...], dict[str, Any], object]] = {}


def _compile(
    source: object, build: Callable[[], ClauseElement], dialect: Dialect
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """SQL text with positional placeholders, the parameter names in their order, and the
    values of the statement's own constants."""
    key = (id(source), dialect.name)
    found = _compiled.get(key)
    if found is None:
        compiled = build().compile(dialect=dialect)
        order = tuple(getattr(compiled, "positiontup", None) or ())
        found = _compiled[key] = (compiled.string, order, dict(compiled.params), source)
    return found[0], found[1], found[2]


class Script:
    """Write statements collected first and run together: on aiosqlite in one hand-off to its
    thread (plain ``sqlite3`` calls on the same connection and transaction), elsewhere one
    driver call each. A batch of messages then costs one thread hop instead of a dozen.

    A script with a ``new_only`` insert runs inside a savepoint: when a row it inserts collides
    with a unique key, everything the script did is undone, the rest is not run and ``run``
    returns False, so the caller can look the existing rows up and try again. Checking first
    would cost a query per batch for the rare retried message."""

    _SAVEPOINT = "imhub_script"

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        # (sql, params, many, where the returned rows go or None, rows expected back or None)
        self._steps: list[tuple[str, Any, bool, list[tuple[Any, ...]] | None, int | None]] = []
        self._guarded = False

    def execute_many(self, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
        """``stmt`` (a module-level statement with named bind parameters) once per row."""
        if not rows:
            return
        sql, order, constants = _compile(stmt, lambda: stmt, self._dialect)
        params = [tuple(row[k] if k in row else constants[k] for k in order) for row in rows]
        self._steps.append((sql, params, True, None, None))

    def insert_returning(
        self,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        returning: Sequence[str],
        new_only: bool = False,
        chunk: int = 500,
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (tuples in ``columns`` order; give every NOT NULL column) with
        multi-row statements. Returns a list that ``run`` fills with the ``returning`` columns
        of every row, in no particular order. With ``new_only``, rows must not exist yet: if
        one does (a unique key collides), the whole script is undone and ``run`` returns
        False."""
        self._guarded |= new_only
        out: list[tuple[Any, ...]] = []
        head, tail = _insert_sql(
            self._dialect, table.name, tuple(columns), tuple(returning), new_only
        )
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            groups = _groups(self._dialect.paramstyle, len(part), len(columns))
            params = tuple(chain.from_iterable(part))
            expect = len(part) if new_only else None
            self._steps.append((head + groups + tail, params, False, out, expect))
        return out

    async def run(self, conn: AsyncConnection) -> bool:
        """Run the steps; False when a ``new_only`` insert collided and the script was undone."""
        if not self._steps:
            return True
        driver = driver_connection(conn)
        if isinstance(driver, aiosqlite.Connection):
            db: sqlite3.Connection = driver._conn
            done = self._run_sqlite_here(db)
            if done is None:  # another process writes: wait for it in aiosqlite's thread
                done = await driver._execute(self._run_sqlite, db)  # type: ignore[no-untyped-call]
            return bool(done)
        if self._guarded:
            await conn.exec_driver_sql(f"SAVEPOINT {self._SAVEPOINT}")
        for sql, params, _many, out, expect in self._steps:
            try:
                result = await conn.exec_driver_sql(sql, params)
            except IntegrityError as exc:
                if expect is None or not _duplicate_key(exc):
                    raise
                rows = None  # MySQL: the insert stopped at a row that collided
            else:
                rows = [tuple(r) for r in result] if out is not None else []
            if out is not None and rows is not None:
                out.extend(rows)
            if expect is not None and (rows is None or len(rows) < expect):
                await conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {self._SAVEPOINT}")
                await conn.exec_driver_sql(f"RELEASE SAVEPOINT {self._SAVEPOINT}")
                return False
        if self._guarded:
            await conn.exec_driver_sql(f"RELEASE SAVEPOINT {self._SAVEPOINT}")
        return True

    def _run_sqlite_here(self, db: sqlite3.Connection) -> bool | None:
        """``_run_sqlite`` on the event loop's thread: a batch's statements take tens of
        microseconds of CPU and touch pages in memory, so handing them to aiosqlite's thread
        and back cost more than they do (two thread switches and a wake-up of the loop).
        The commit, whose fsync waits for the disk, still goes to that thread
        (``commit_sqlite``), and nothing else uses the connection meanwhile: its user awaits
        each operation on it in turn.

        Only a lock held by another process (``imhub user add`` beside the server) could
        make a statement wait here, and the loop must never wait: the transaction is opened
        with ``BEGIN IMMEDIATE`` (the write lock, or "busy" at once) under a zero busy
        timeout, and None (nothing done) sends the script to the thread, where SQLite's busy
        handler may wait."""
        if not db.in_transaction:
            db.execute("PRAGMA busy_timeout=0")
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return None
            finally:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return self._run_sqlite(db)

    def _run_sqlite(self, db: sqlite3.Connection) -> bool:
        if self._guarded:
            if not db.in_transaction:
                # Outside a transaction a savepoint opens one, and releasing it would commit
                # this script apart from the rest of the writer's batch.
                db.execute("BEGIN")
            db.execute(f"SAVEPOINT {self._SAVEPOINT}")
        for sql, params, many, out, expect in self._steps:
            if many:
                db.executemany(sql, params)
                continue
            rows = db.execute(sql, params).fetchall()
            if out is not None:
                out.extend(tuple(r) for r in rows)
            if expect is not None and len(rows) < expect:
                db.execute(f"ROLLBACK TO SAVEPOINT {self._SAVEPOINT}")
                db.execute(f"RELEASE SAVEPOINT {self._SAVEPOINT}")
                return False
        if self._guarded:
            db.execute(f"RELEASE SAVEPOINT {self._SAVEPOINT}")
        return True


@lru_cache(maxsize=64)
def _insert_sql(
    dialect: Dialect,
    table: str,
    columns: tuple[str, ...],
    returning: tuple[str, ...],
    new_only: bool,
) -> tuple[str, str]:
    """The text around a multi-row insert's ``VALUES`` groups (made once: quoting every name
    again cost more than the statement's parameters for a batch of a few messages)."""
    quote = dialect.identifier_preparer.quote
    verb, skip = _skip_conflicts(dialect.name) if new_only else ("INSERT INTO", "")
    head = f"{verb} {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES "
    tail = f"{skip} RETURNING {', '.join(quote(c) for c in returning)}"
    return head, tail


def driver_connection(conn: AsyncConnection) -> Any:
    """The driver's own connection under ``conn`` (aiosqlite's, asyncpg's, ...), taken
    without a round through SQLAlchemy's greenlet (``get_raw_connection`` costs one)."""
    return conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]


async def commit_sqlite(conn: AsyncConnection) -> None:
    """Commit the writer's SQLite transaction in one hand-off to aiosqlite's thread.

    SQLAlchemy's ``begin()``/``commit()`` cost about 160 µs of CPU per transaction on
    SQLite (greenlet switches and bookkeeping: 263 against 99 µs for a one-row transaction
    done in one hand-off; docs/architecture.md, *Storage*), a fixed cost every batch paid,
    and at moderate load a batch holds a message or two. The transaction is the driver's
    own (``Script`` opens it, or pysqlite at a first write made through SQLAlchemy); a
    failure closes the connection, which rolls it back."""
    await driver_connection(conn).commit()


def _skip_conflicts(dialect: str) -> tuple[str, str]:
    """How a dialect inserts rows skipping those that collide with a unique key: the verb,
    and the clause before ``RETURNING``.

    MySQL has no such clause that is safe: ``INSERT IGNORE`` turns every error of the
    statement into a warning (a value truncated, a NULL made 0), not only duplicates, and
    ``ON DUPLICATE KEY UPDATE`` returns no row for the duplicates to tell them apart. There
    the insert is a plain one, and its duplicate-key error (the statement alone is undone)
    says the same as a short ``RETURNING``: ``Script.run`` rolls the savepoint back."""
    if dialect in ("mysql", "mariadb"):
        return "INSERT INTO", ""
    return "INSERT INTO", " ON CONFLICT DO NOTHING"  # SQLite, PostgreSQL


MYSQL_DUPLICATE_KEY = 1062


def _duplicate_key(exc: IntegrityError) -> bool:
    """A MySQL/MariaDB duplicate-key error (ER_DUP_ENTRY)."""
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] == MYSQL_DUPLICATE_KEY


@lru_cache(maxsize=256)
def _groups(paramstyle: str, rows: int, n: int) -> str:
    """``rows`` groups of ``n`` placeholders each, numbered on for numbered styles."""
    return ", ".join(_group(paramstyle, i * n, n) for i in range(rows))


def _group(paramstyle: str, offset: int, n: int) -> str:
    """One row's placeholders in the driver's style."""
    if paramstyle == "qmark":
        marks = ["?"] * n
    elif paramstyle == "format":
        marks = ["%s"] * n
    elif paramstyle in ("numeric_dollar", "numeric"):
        sign = "$" if paramstyle == "numeric_dollar" else ":"
        marks = [f"{sign}{offset + j + 1}" for j in range(n)]
    else:
        raise NotImplementedError(f"paramstyle {paramstyle}")
    return "(" + ", ".join(marks) + ")"


async def select_where_pairs_in(
    conn: AsyncConnection,
    columns: Sequence[Any],
    table: Table,
    key_columns: tuple[str, str],
    keys: Sequence[tuple[Any, Any]],
    chunk: int = 500,
) -> list[tuple[Any, ...]]:
    """Rows whose two ``key_columns`` match one of ``keys``, found through their index.

    ``columns`` (a module-level list of one table's columns, labels allowed) is compiled once;
    SQLAlchemy's expanding tuple-IN renders each key as a bound expression, which costs more
    than the query. SQLite answers ``(a, b) IN ((?, ?), …)`` by scanning the whole index, so
    there the keys are a ``VALUES`` list joined to the table (one index search per key)."""
    if not keys:
        return []
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    head, _, _ = _compile(columns, lambda: select(*columns).select_from(table), dialect)
    a, b = (quote(k) for k in key_columns)
    t = quote(table.name)
    out: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        groups = _groups(dialect.paramstyle, len(part), 2)
        if dialect.name == "sqlite":
            sql = (
                f"WITH k(a, b) AS (VALUES {groups}) {head} "
                f"JOIN k ON {t}.{a} = k.a AND {t}.{b} = k.b"
            )
        else:
            sql = f"{head} WHERE ({a}, {b}) IN ({groups})"
        result = await conn.exec_driver_sql(sql, tuple(chain.from_iterable(part)))
        out.extend(tuple(r) for r in result)
    return out
