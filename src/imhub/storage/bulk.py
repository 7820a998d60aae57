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
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

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
    driver call each. A batch of messages then costs one thread hop instead of a dozen."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        # (sql, params, many, where the returned rows go or None)
        self._steps: list[tuple[str, Any, bool, list[tuple[Any, ...]] | None]] = []

    def execute_many(self, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
        """``stmt`` (a module-level statement with named bind parameters) once per row."""
        if not rows:
            return
        sql, order, constants = _compile(stmt, lambda: stmt, self._dialect)
        params = [tuple(row[k] if k in row else constants[k] for k in order) for row in rows]
        self._steps.append((sql, params, True, None))

    def insert_returning(
        self,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        returning: Sequence[str],
        chunk: int = 500,
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (tuples in ``columns`` order; give every NOT NULL column) with
        multi-row statements. Returns a list that ``run`` fills with the ``returning`` columns
        of every row, in no particular order."""
        out: list[tuple[Any, ...]] = []
        quote = self._dialect.identifier_preparer.quote
        head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
        tail = f" RETURNING {', '.join(quote(c) for c in returning)}"
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            groups = _groups(self._dialect.paramstyle, len(part), len(columns))
            params = tuple(chain.from_iterable(part))
            self._steps.append((head + groups + tail, params, False, out))
        return out

    async def run(self, conn: AsyncConnection) -> None:
        if not self._steps:
            return
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, aiosqlite.Connection):
            # aiosqlite's own thread, with the connection it holds for SQLAlchemy.
            await driver._execute(self._run_sqlite, driver._conn)  # type: ignore[no-untyped-call]
            return
        for sql, params, _many, out in self._steps:
            result = await conn.exec_driver_sql(sql, params)
            if out is not None:
                out.extend(tuple(r) for r in result)

    def _run_sqlite(self, db: sqlite3.Connection) -> None:
        for sql, params, many, out in self._steps:
            if many:
                db.executemany(sql, params)
            else:
                rows = db.execute(sql, params).fetchall()
                if out is not None:
                    out.extend(tuple(r) for r in rows)


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
