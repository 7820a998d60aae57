"""Alembic, driven from code: ``imhub migrate`` and the start-up check of ``imhub serve``.

Migrations take a lock first, so that two ``imhub migrate`` started at once (two servers
deployed together) run one after the other: the second finds the database at the newest
revision and does nothing, instead of creating the same tables again and failing half-way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.storage.database import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_WAIT = 600  # seconds a migration waits for another to finish (and a statement may take)
# MySQL/MariaDB GET_LOCK's name (server-wide: it names the database, at most 64 characters)
LOCK_NAME = "CONCAT('imhub.migrate.', LEFT(DATABASE(), 40))"
LOCK_KEY = 0x696D_6875_626D_6967  # PostgreSQL advisory lock ("imhubmig"; per database)


class MigrationError(SystemExit):
    """A migration that failed once the database was open. A ``SystemExit``: the command
    stops with this one line (exit status 1), never the "cannot open the database" of a
    database that could not be reached."""

    def __init__(self, why: str) -> None:
        super().__init__(f"migration failed: {why}")


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url  # not in the ini options: '%' in a password would break them
    return cfg


def upgrade(url: str) -> None:
    """Apply every migration not yet applied (creates the SQLite file and its folder)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


def migration_engine(url: str) -> AsyncEngine:
    """The engine migrations run on: statements may take as long as a migration's (an index
    built on a big table), and on SQLite the whole run is one ``BEGIN IMMEDIATE`` transaction,
    which is SQLite's own lock: a second run waits for the first to commit."""
    engine = create_engine(url, statement_timeout=LOCK_WAIT)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # pysqlite begins nothing by itself...
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={LOCK_WAIT * 1000}")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # ...we begin, taking the write lock

    return engine


def lock_migrations(conn: Connection) -> None:
    """Begin the migrations' transaction and take the lock that keeps other runs out until
    it ends: PostgreSQL's transaction-scoped advisory lock (its DDL is transactional, so the
    run is one transaction), MySQL/MariaDB's ``GET_LOCK`` (held by the session: their DDL
    commits by itself; released when the connection closes), SQLite's ``BEGIN IMMEDIATE``
    (``migration_engine``)."""
    conn.begin()
    name = conn.dialect.name
    if name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    elif name in ("mysql", "mariadb"):
        got = conn.exec_driver_sql(f"SELECT GET_LOCK({LOCK_NAME}, {LOCK_WAIT})").scalar()
        if got != 1:
            raise MigrationError(f"another migration held the lock for {LOCK_WAIT} s")


class PrimaryKeyNameNote(logging.Filter):
    """Drops asyncmy's warning "Name 'alembic_version_pkc' ignored for PRIMARY key": Alembic
    names its version table's primary key, MySQL/MariaDB name every primary key PRIMARY and
    say so (note 1280), and nothing refers to that name on MySQL. Every other warning stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ignored for PRIMARY key" not in record.getMessage()


async def pending_migrations(engine: AsyncEngine) -> bool:
    """True when the database is not at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    async with engine.connect() as conn:
        current = await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
    return current != head
