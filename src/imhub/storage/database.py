"""Engine creation, with the SQLite settings that make the embedded default safe and fast,
and the WAL checkpoints that keep commits short."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from imhub.storage.outage import OutageLog

log = logging.getLogger(__name__)

PAGE_SIZE = 2048
CONNECT_TIMEOUT = 5.0  # seconds (PostgreSQL, MySQL/MariaDB)
STATEMENT_TIMEOUT = 10.0  # seconds one statement may wait for the server's answer
BUSY_TIMEOUT_MS = 10_000  # how long a SQLite statement may wait for another process's lock


def url_problem(url: str) -> str | None:
    """What keeps ``url`` from being opened, said without its password, or None: not a
    database URL, no such dialect, its driver not installed, a SQLite file in a folder that
    does not exist."""
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:  # (an ArgumentError too: first)
        return f"no database dialect {make_url(url).drivername!r}"
    except (ArgumentError, ValueError):
        return "not a database URL (e.g. sqlite+aiosqlite:///path/imhub.db)"
    except ImportError as exc:
        return f"the driver for {parsed.drivername!r} is not installed ({exc.name})"
    if not dialect.is_async:
        return f"{parsed.drivername!r} is not an asyncio driver (e.g. sqlite+aiosqlite)"
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return _sqlite_file_problem(Path(parsed.database))
    return None


def _sqlite_file_problem(path: Path) -> str | None:
    if not path.parent.is_dir():
        return f"the SQLite file's folder {path.parent} does not exist"
    if path.is_dir():
        return f"{path} is a folder, not a SQLite file"
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(16)
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror}"
        if head and head != b"SQLite format 3\x00":
            return f"{path} is not a SQLite database"
    return None


# Strict: a value that does not fit (too long, out of range, NULL where none may be) is an
# error, never a silent truncation or a zero; PostgreSQL and SQLite (with our checks) refuse
# alike. ANSI_QUOTES is left out: SQLAlchemy quotes MySQL identifiers with backticks.
MYSQL_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)


def _mysql_url(url: str) -> str:
    """The URL with ``charset=utf8mb4`` unless it names one: 4-byte characters (emoji) must
    round-trip, and MySQL's ``utf8`` holds three bytes at most."""
    parsed = make_url(url)
    if "charset" in parsed.query:
        return url
    return parsed.update_query_dict({"charset": "utf8mb4"}).render_as_string(hide_password=False)


def create_engine(
    url: str,
    durability: str = "fsync",
    statement_timeout: float = STATEMENT_TIMEOUT,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine; on SQLite: WAL (readers never block the writer), a commit fsynced
    before it returns (``synchronous=FULL``: an acknowledged message survives power loss;
    ``durability="os"``: ``NORMAL``, see ``durability_problem``), and a busy timeout for a
    second process such as ``imhub user add`` writing beside a running server.

    New databases use 2 KiB pages (SQLite's default is 4): a commit writes every page it
    changed into the WAL whole, and a small batch changes one index page per conversation, so
    at moderate load smaller pages halve the bytes written per message (measured: 31 → 20 µs
    of CPU per message at 10 per commit, 8.2 → 9.0 at 500). Existing files keep theirs.

    No connection checkpoints the WAL inside a commit (``wal_autocheckpoint=0``): SQLite would
    copy the WAL into the database inside whichever commit takes it past 1,000 pages, and every
    message waiting on that commit would wait milliseconds longer. ``Checkpointer`` does it.

    PostgreSQL and MySQL/MariaDB: READ COMMITTED (MariaDB's default is REPEATABLE READ, whose
    snapshot would hide a row another writer committed after our transaction's first read,
    such as the copy of a message a retry at another node stored: see docs/architecture.md),
    pooled connections checked before use; on MySQL/MariaDB a strict ``sql_mode`` and utf8mb4
    with a binary collation for the session. PostgreSQL with ``durability="os"``: the
    session's ``synchronous_commit=off``."""
    problem = durability_problem(url, durability)
    if problem is not None:
        raise ValueError(problem)
    backend = make_url(url).get_backend_name()
    if backend != "sqlite":
        # A pooled connection the database dropped (a restart, a failover) is found before
        # use and replaced, instead of failing the request that drew it.
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    # A database server that hangs (stopped, or cut off without a reset) must not hold a
    # request forever: connecting and each statement have a time limit, after which the
    # request fails like any outage (``storage.outage``: a retryable 500).
    if backend == "postgresql":
        pg_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT, "command_timeout": statement_timeout}
        if durability == "os":  # sent with the connection's start-up, no statement of its own
            pg_args["server_settings"] = {"synchronous_commit": "off"}
        kwargs.setdefault("connect_args", pg_args)
    if backend in ("mysql", "mariadb"):
        kwargs.setdefault(
            "connect_args",
            {"connect_timeout": int(CONNECT_TIMEOUT), "read_timeout": int(statement_timeout)},
        )
        url = _mysql_url(url)
    if backend == "sqlite":
        # The writer runs its statements on the loop's thread (``bulk.Script``), the rest of
        # the connection's work in aiosqlite's: never at once, never in the same thread.
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "check_same_thread": False}
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "do_connect", _connect_or_dbapi_error)
    if backend in ("mysql", "mariadb"):

        @event.listens_for(engine.sync_engine, "connect")
        def _mysql_session(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'")
            cur.execute("SET NAMES utf8mb4 COLLATE utf8mb4_nopad_bin")
            cur.close()

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # First: setting the journal mode waits for a lock another process holds (a
            # migration's BEGIN IMMEDIATE) only this long.
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before the first table, or ignored
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={_SQLITE_SYNCHRONOUS[durability]}")
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

    return engine


def _connect_or_dbapi_error(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Connect, with a failure to reach the server said as the driver's ``OperationalError``.

    SQLAlchemy wraps only the driver's own errors (``DBAPIError``); asyncpg lets a refused
    or reset socket, a host name that does not resolve, a refused TLS upgrade and its connect
    timeout out as bare ``OSError``s, which went past every ``except SQLAlchemyError`` (a
    150-line traceback for ``imhub migrate`` against a PostgreSQL that is down, where
    asyncmy's own error gave one line). Wrapped, they are a ``DBAPIError`` like any other
    (the original as its ``__cause__``, which ``storage.outage.unavailable`` looks at)."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:  # ConnectionError, socket.gaierror, TimeoutError among them
        if isinstance(exc, TimeoutError):
            why = f"no answer within {CONNECT_TIMEOUT:g} s"
        else:
            why = str(exc) or type(exc).__name__
        raise dialect.loaded_dbapi.OperationalError(f"cannot connect: {why}") from exc


# Durability (``Config.durability``, docs/security.md "Crash safety"): "fsync" answers a write
# once its commit is on disk; "os" once the commit has reached the operating system, which
# keeps it through a kill of imhub but may lose the last commits (never corrupting anything)
# if the machine stops first. SQLite WAL with NORMAL syncs the WAL only at checkpoints
# (``Checkpointer``: every 0.5 s under load); PostgreSQL's asynchronous commit leaves the
# flush to its WAL writer (at most 3 × ``wal_writer_delay`` late, 600 ms by default).
DURABILITY = ("fsync", "os")
_SQLITE_SYNCHRONOUS = {"fsync": "FULL", "os": "NORMAL"}
_SQLITE_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def durability_problem(url: str, durability: str) -> str | None:
    """Why ``durability`` cannot be had on ``url``'s database, or None. MySQL/MariaDB flush
    their log at commit as the server-wide ``innodb_flush_log_at_trx_commit`` says, which a
    client cannot set for its session: there "os" would change nothing, so it is refused
    rather than shown as in effect when it is not."""
    if durability not in DURABILITY:
        return f"durability: expected one of {', '.join(map(repr, DURABILITY))}"
    if durability == "os" and make_url(url).get_backend_name() in ("mysql", "mariadb"):
        return (
            "durability = os cannot be set by imhub on MySQL/MariaDB: when a commit reaches"
            " the disk is the database server's innodb_flush_log_at_trx_commit (server-wide)."
            " Keep durability = fsync; to trade durability for speed, set"
            " innodb_flush_log_at_trx_commit = 2 on the server (imhub then warns at start)"
        )
    return None


async def commit_setting(engine: AsyncEngine) -> tuple[str, bool]:
    """The database's own settings that decide when a commit is on disk, read back on a
    connection of the pool (what the connection hook set, or the server's values), and
    whether a commit then waits for the disk. (``synchronous_commit`` other than ``off``, such
    as ``local`` or ``remote_write``, all wait for the local flush.)"""
    name = engine.dialect.name
    async with engine.connect() as conn:
        if name == "sqlite":
            level = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
            text = _SQLITE_LEVELS.get(int(level or 0), str(level))
            return f"SQLite synchronous={text}", text in ("FULL", "EXTRA")
        if name == "postgresql":
            value = str((await conn.exec_driver_sql("SHOW synchronous_commit")).scalar())
            if str((await conn.exec_driver_sql("SHOW fsync")).scalar()) == "off":
                return f"PostgreSQL synchronous_commit={value}, fsync=off", False
            return f"PostgreSQL synchronous_commit={value}", value != "off"
        sql = "SELECT @@GLOBAL.innodb_flush_log_at_trx_commit"
        value = str((await conn.exec_driver_sql(sql)).scalar())
        return f"MySQL/MariaDB innodb_flush_log_at_trx_commit={value}", value == "1"


# Errors that say "another transaction was in the way; the same work may succeed now":
# PostgreSQL's serialization failure, deadlock and lock-not-available (SQLSTATE), MySQL's
# deadlock and lock-wait timeout (error numbers).
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03"})
_MYSQL_TRANSIENT = frozenset({1213, 1205})


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a conflict between writers that a retry of the whole transaction
    may get past (several servers on one database)."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _PG_TRANSIENT:
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in _MYSQL_TRANSIENT


class LockedError(Exception):
    """Another server holds the SQLite database."""


class ExclusiveLock:
    """One server per SQLite database: ``imhub serve`` holds an exclusive ``flock`` on the
    database file while it runs, and a second one refuses to start. The writer's caches
    assume it is the only writer there (several servers need PostgreSQL or MySQL/MariaDB).
    ``flock`` is apart from SQLite's own POSIX locks, so other tools (``imhub user add``)
    still open the file beside the server; the kernel drops the lock when the process ends,
    however it ends. Does nothing on other databases."""

    def __init__(self, engine: AsyncEngine) -> None:
        url = engine.url
        self._path: Path | None = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._path = Path(url.database)
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._path is None or self._fd is not None:
            return
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(
                f"the SQLite database {self._path} is in use by another imhub server: SQLite"
                " takes one server; run several on PostgreSQL or MySQL/MariaDB"
            ) from None
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Checkpointer:
    """Copies committed pages from the WAL into the database file every ``interval`` seconds,
    on a connection (and thread) of its own, so commits never wait for the bulk of it.

    A checkpoint running beside a busy writer never catches up with it: pages keep arriving
    while it copies, the WAL can never start over, and under sustained load it grows without
    end (160 MB in a 5 s benchmark). So after each background round the writer finishes the
    job between two batches (``between_batches``, on its own connection): it copies only what
    arrived during that round, a millisecond or so, nobody writes meanwhile, and the next
    commit starts the WAL over from its beginning. Does nothing on other databases."""

    def __init__(self, engine: AsyncEngine, interval: float = 0.5) -> None:
        self._engine = engine
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._catch_up = False  # a background round ran; the writer finishes it
        self._outage = OutageLog(log, failed="checkpoints failed")  # it answers no request

    def start(self) -> None:
        if self._engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._run(), name="imhub-checkpointer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with self._engine.connect() as conn:
            while True:
                await asyncio.sleep(self._interval)
                try:
                    await checkpoint(conn)
                    self._catch_up = True
                except Exception as exc:  # a busy database now is no reason to stop for good
                    if not self._outage.note(exc):  # a full disk: a line per 10 s, no trace
                        log.exception("WAL checkpoint failed")

    async def between_batches(self, conn: AsyncConnection) -> None:
        """The writer's part, run by it outside any transaction (``BatchWriter``)."""
        if self._catch_up:
            self._catch_up = False
            await checkpoint(conn)


async def checkpoint(conn: AsyncConnection) -> tuple[int, int, int]:
    """One passive checkpoint: (busy, pages in the WAL, pages copied to the database)."""
    result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    busy, wal, copied = tuple(result.one())
    await conn.rollback()  # end the read transaction the pragma may have opened
    return int(busy), int(wal), int(copied)


async def ping(engine: AsyncEngine, within: float) -> str | None:
    """None if the database answers a cheap query (a real table's one row, so the file is
    read, not just the connection) within ``within`` seconds; else why not.

    The query runs in a task of its own: a driver busy in its thread may outlast a
    cancellation, and a probe must answer in time whatever the database does."""

    async def query() -> None:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT version_num FROM alembic_version")

    task = asyncio.ensure_future(query())
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        task.add_done_callback(_retrieve)
        return f"the database did not answer within {within:g} s"
    exc = task.exception()
    return None if exc is None else f"the database failed a query ({type(exc).__name__})"


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
