"""Fresh, empty, migrated databases for test servers, on SQLite, PostgreSQL or MariaDB.

Every test server gets a database of its own, so the migration runs once per backend and each
new database is a copy: SQLite copies a template file, PostgreSQL creates a database from a
template database (``CREATE DATABASE … TEMPLATE``), and MariaDB, which has no templates,
creates each table ``LIKE`` the template's (about 0.2 s, against 1.4 s to migrate).

Tests check what was stored through ``Database.sql`` / ``Database.count``: a synchronous
SQLAlchemy connection (sqlite3, psycopg, PyMySQL) and ``text()`` with ``?`` placeholders, so
one query serves every backend.
"""

from __future__ import annotations

import itertools
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tests.services import MariaDB, Postgres, migrate

BACKENDS = ("sqlite", "postgresql", "mariadb")
_names = itertools.count(1)


class Database:
    """One test database: its URL for the server (async driver), and a way to read it."""

    def __init__(self, url: str, sync_url: str, backend: str) -> None:
        self.url = url
        self.sync_url = sync_url
        self.backend = backend
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.sync_url, poolclass=NullPool)
        return self._engine

    @contextmanager
    def connect(self) -> Iterator[Checker]:
        """A connection in a transaction, committed at the end of the block."""
        with self.engine.begin() as conn:
            yield Checker(conn)

    def sql(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and commit; the rows it returned."""
        with self.connect() as conn:
            result = conn.execute(sql, args)
            return [tuple(r) for r in result] if result.returns_rows else []

    def count(self, sql: str, *args: Any) -> int:
        """The first column of the first row, as an int (a count, a flag)."""
        return int(self.sql(sql, *args)[0][0])

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class Checker:
    """A connection that takes SQL text with ``?`` placeholders, as sqlite3's does."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> CursorResult[Any]:
        return self.conn.execute(*bind(sql, tuple(args)))


def bind(sql: str, args: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
    """``?`` placeholders as named bind parameters of ``text()``."""
    counter = itertools.count()
    named = re.sub(r"\?", lambda _: f":p{next(counter)}", sql)
    return text(named), {f"p{i}": v for i, v in enumerate(args)}


class Databases(ABC):
    """A factory of fresh migrated databases on one backend."""

    name: str

    @abstractmethod
    def fresh(self, folder: Path) -> Database:
        """A new empty migrated database (``folder`` is the server's data folder)."""

    def empty(self, folder: Path) -> Database:
        """A new database with no tables at all (for migration tests)."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - most factories start nothing
        """Stop what this factory started."""


class SqliteDatabases(Databases):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._template = root / "imhub.db"
        migrate(f"sqlite+aiosqlite:///{self._template}")

    def fresh(self, folder: Path) -> Database:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "imhub.db"
        shutil.copy(self._template, path)
        return Database(f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}", self.name)

    def empty(self, folder: Path) -> Database:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "imhub.db"
        return Database(f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}", self.name)


class PostgresDatabases(Databases):
    name = "postgresql"

    def __init__(self, server: Postgres | None = None) -> None:
        self.server = server or Postgres()
        self._owned = server is None
        self.server.admin("CREATE DATABASE imhub_template")
        migrate(self.server.url("imhub_template"))

    def _database(self, name: str) -> Database:
        return Database(self.server.url(name), self.server.url(name, "psycopg"), self.name)

    def fresh(self, folder: Path) -> Database:
        name = f"imhub_{next(_names)}"
        self.server.admin(f"CREATE DATABASE {name} TEMPLATE imhub_template")
        return self._database(name)

    def empty(self, folder: Path) -> Database:
        name = f"imhub_{next(_names)}"
        self.server.admin(f"CREATE DATABASE {name}")
        return self._database(name)

    def close(self) -> None:
        if self._owned:
            self.server.remove()


class MariaDatabases(Databases):
    name = "mariadb"
    TEMPLATE = "imhub_template"

    def __init__(self, root: Path, server: MariaDB | None = None) -> None:
        self.server = server or MariaDB(root)
        self._owned = server is None
        self.server.admin(f"CREATE DATABASE {self.TEMPLATE}")
        migrate(self.server.url(self.TEMPLATE))
        self._tables = [
            str(t)
            for (t,) in self.server.query(
                "SELECT table_name FROM information_schema.tables"
                f" WHERE table_schema = '{self.TEMPLATE}'"
            )
        ]

    def _database(self, name: str) -> Database:
        return Database(self.server.url(name), self.server.url(name, "pymysql"), self.name)

    def fresh(self, folder: Path) -> Database:
        name = f"imhub_{next(_names)}"
        copy = [f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"]
        copy += [f"CREATE TABLE {name}.{t} LIKE {self.TEMPLATE}.{t}" for t in self._tables]
        copy.append(
            f"INSERT INTO {name}.alembic_version SELECT * FROM {self.TEMPLATE}.alembic_version"
        )
        self.server.admin(";".join(copy))
        return self._database(name)

    def empty(self, folder: Path) -> Database:
        name = f"imhub_{next(_names)}"
        self.server.admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return self._database(name)

    def close(self) -> None:
        if self._owned:
            self.server.stop()
