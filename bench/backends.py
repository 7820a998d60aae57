"""The scale-out benchmarks' services: database servers as durable as SQLite's setting, fresh
databases with users, imhub processes (one, ``--workers N``, or cluster nodes), Redis, CPU
pinning of whole process trees and their CPU time from ``/proc``.

The servers come from ``tests.services`` (the tests' throw-away instances on loopback and free
ports), started here with durable commits: SQLite runs with ``synchronous=FULL`` (a commit is
fsynced), so PostgreSQL keeps ``fsync=on``/``synchronous_commit=on`` and MariaDB
``innodb_flush_log_at_trx_commit=1``; the tests' settings (no fsync) would compare a durable
SQLite with volatile servers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import API_KEY, CAPACITY, SECRET
from imhub.storage.models import users_table
from tests.databases import Database, Databases, MariaDatabases, PostgresDatabases, SqliteDatabases
from tests.services import MariaDB, Postgres, Redis

CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_CPUS = frozenset(range(os.cpu_count() or 1))


class DurablePostgres(Postgres):
    """PostgreSQL 15 with its default durability (every commit's WAL fsynced)."""

    SETTINGS = "-c shared_buffers=128MB"


class DurableMariaDB(MariaDB):
    """MariaDB 10.11 with InnoDB's default durability (the redo log fsynced per commit)."""

    SETTINGS = ("--innodb-flush-log-at-trx-commit=1",)


class Backend:
    """One database server for a whole benchmark run, a fresh migrated database per scenario
    run (``fresh``), and the server's process tree for pinning and CPU accounting."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.pid: int | None = None  # the server's root process (None: SQLite, in imhub)
        self._server: Postgres | MariaDB | None = None
        self.factory: Databases
        if name == "sqlite":
            self.factory = SqliteDatabases(root / "template")
        elif name == "postgresql":
            self._server = DurablePostgres()
            self.factory = PostgresDatabases(self._server)
            self.pid = self._server.pid
        elif name == "mariadb":
            self._server = DurableMariaDB(root / "mariadb")
            self.factory = MariaDatabases(root / "mariadb", self._server)
            self.pid = self._server.pid
        else:
            raise ValueError(name)

    def fresh(self, folder: Path, users: int) -> Database:
        """A new migrated database with users 1 to ``users``."""
        db = self.factory.fresh(folder)
        with db.engine.begin() as conn:
            conn.execute(
                insert(users_table),
                [{"username": f"u{i}", "mobile": "", "head_img": ""} for i in range(1, users + 1)],
            )
        return db

    def pin(self, cpus: Iterable[int]) -> None:
        if self.pid is not None:
            pin_tree(self.pid, cpus)

    def close(self) -> None:
        if isinstance(self._server, Postgres):
            self._server.remove()
        elif self._server is not None:
            self._server.stop()


# Process trees: pinning and CPU time -------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (this kernel has no /proc/PID/task/TID/children)."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{name}/stat").read_text()
                out[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def pin_tree(pid: int, cpus: Iterable[int]) -> None:
    """Every thread of every process of the tree on ``cpus``; processes and threads created
    later inherit it from their parent."""
    cpus = set(cpus)
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), cpus)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of the trees rooted at ``pids``, including their exited children
    that were waited for (cutime, cstime)."""
    ticks = 0
    for root in pids:
        for p in tree(root):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


# imhub processes ---------------------------------------------------------------------------


class Imhub:
    """One ``imhub serve`` process (with ``--workers N``, the parent and its workers)."""

    def __init__(
        self,
        data: Path,
        database: Database,
        cpus: Iterable[int] | None = None,
        **options: Any,
    ) -> None:
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "IMHUB_DATA_DIR": str(data),
            "IMHUB_DATABASE_URL": database.url,
            "IMHUB_TOKEN_SECRET": SECRET,
            "IMHUB_API_KEY": API_KEY,
            "IMHUB_LOG_LEVEL": "WARNING",
            "IMHUB_PORT": "0",
            "IMHUB_LOGIN_TIMEOUT": "120",
            **CAPACITY,  # (bench/common.py)
        }
        for key, value in options.items():
            env["IMHUB_" + key.upper()] = str(value)
        pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus is not None else []
        # BENCH_PROFILE_DIR=DIR: each process under cProfile (the workers of --workers not).
        profile = os.environ.get("BENCH_PROFILE_DIR")
        prof = ["-m", "cProfile", "-o", f"{profile}/{data.name}.prof"] if profile else []
        self.log = data / "stderr.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [*pin, sys.executable, *prof, "-m", "imhub", "serve"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("imhub listening on"):
            self.stop()
            raise RuntimeError(f"imhub did not start: {line!r}\n{self.log.read_text()[-3000:]}")
        self.port = int(line.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    root = Path(tempfile.mkdtemp(prefix="imhub-bench-redis-"))
    server = Redis(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
