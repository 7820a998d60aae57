"""Throw-away PostgreSQL, MariaDB and Redis servers for the tests, on loopback and free ports,
in a temporary folder (recipes: ../shared/notes/services.md).

Each server is started once per test session, when a test first needs it, and stopped at the
end by its pid. A missing binary skips the tests that need it, except in CI (``CI=true``),
where it fails them: a green CI run must have run every backend.

The database servers run without fsync (``fsync=off``, ``innodb_flush_log_at_trx_commit=2``):
the tests kill processes, never the machine, and a commit still writes its log to the
kernel before it returns, so what a killed server acknowledged survives its restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"
START_TIMEOUT = 30.0

PG_BIN = Path(os.environ.get("IMHUB_PG_BIN", "/usr/lib/postgresql/15/bin"))


def missing(what: str) -> NoReturn:
    """Skip the test for lack of ``what``; in CI, fail it."""
    if IN_CI:
        pytest.fail(f"{what} is not installed, and CI must run every backend", pytrace=False)
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``ready`` until it holds (a server coming up has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def end(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal one process we started and wait until it is gone (SIGKILL past ``timeout``)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our child: reap it, or it lingers as a zombie
    deadline = time.monotonic() + timeout
    while alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def migrate(url: str) -> None:
    """``imhub migrate`` on ``url``, in a process of its own, as an operator would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "imhub", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"imhub migrate failed: {done.stderr}")


class Postgres:
    """A PostgreSQL 15 cluster of its own. PostgreSQL refuses to run as root, so as root it
    runs as the ``postgres`` user (``runuser``)."""

    def __init__(self) -> None:
        if not (PG_BIN / "postgres").exists():
            missing(f"PostgreSQL ({PG_BIN})")
        # Not under pytest's temporary folder: its folders are private to root, and the
        # postgres user must reach its own.
        self.root = root = Path(tempfile.mkdtemp(prefix="imhub-pg-"))
        self.data = root / "data"
        self.port = free_port()
        root.chmod(0o755)
        if os.getuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        self._as_owner(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"]
        )  # fmt: skip
        self.start()

    def _as_owner(self, cmd: list[str]) -> None:
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[-1]).name} failed: {done.stdout}{done.stderr}")

    # The tests kill processes, never the machine: no fsync (a subclass may want it).
    SETTINGS = "-c fsync=off -c full_page_writes=off -c shared_buffers=64MB"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            f" -c max_connections=300 {self.SETTINGS}"
        )
        self._as_owner(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
             "-t", "30", "-o", options, "start"]
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self, immediate: bool = False) -> None:
        """Stop the postmaster by its pid: a fast shutdown, or an immediate one (a crash:
        connections cut, no checkpoint; the next start recovers)."""
        end(self.pid, signal.SIGQUIT if immediate else signal.SIGINT)

    def remove(self) -> None:
        """Stop it and delete its folder (the end of the session)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return alive(self.pid)

    def url(self, database: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


class MariaDB:
    """A MariaDB 10.11 server of its own (as root, with ``--user=root``), with a user ``im``
    that may do anything over TCP."""

    USER = "im"
    PASSWORD = "im"

    def __init__(self, root: Path) -> None:
        if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
            missing("MariaDB (mariadbd)")
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--user=root", f"--datadir={self.data}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.start()
        self.admin(
            f"CREATE USER '{self.USER}'@'127.0.0.1' IDENTIFIED BY '{self.PASSWORD}';"
            f" GRANT ALL ON *.* TO '{self.USER}'@'127.0.0.1'"
        )

    # A commit's log reaches the kernel, not the disk (a subclass may want the disk).
    SETTINGS: tuple[str, ...] = ("--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0")

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=root", f"--datadir={self.data}",
             f"--socket={self.sock}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.root / 'pid'}", f"--log-error={self.root / 'err.log'}",
             "--skip-name-resolve", *self.SETTINGS, "--innodb-buffer-pool-size=128M",
             "--innodb-log-file-size=64M", "--skip-log-bin", "--max-connections=300"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self._proc.pid
        wait_until(self._answers, "MariaDB")

    def _answers(self) -> bool:
        if self._proc.poll() is not None:
            log = (self.root / "err.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mariadbd exited: {log}")
        try:
            self.admin("SELECT 1")
        except Exception:
            return False
        return True

    def stop(self, immediate: bool = False) -> None:
        end(self.pid, signal.SIGKILL if immediate else signal.SIGTERM, timeout=60)
        self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def url(self, database: str, driver: str = "asyncmy") -> str:
        return (
            f"mysql+{driver}://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{database}"
            "?charset=utf8mb4"
        )

    def admin(self, sql: str) -> None:
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.sock), user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                for statement in sql.split(";"):
                    if statement.strip():
                        cur.execute(statement)
        finally:
            conn.close()

    def query(self, sql: str) -> list[tuple[object, ...]]:
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.sock), user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()


class Redis:
    """A Redis 7 server of its own, no persistence; ``stop`` and ``start`` again on the same
    port (the cluster's tests restart it mid-stream)."""

    def __init__(self, root: Path) -> None:
        if shutil.which("redis-server") is None:
            missing("Redis (redis-server)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--logfile",
             str(self.root / "redis.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self._proc.pid
        wait_until(self._answers, "Redis")

    def _answers(self) -> bool:
        if self._proc.poll() is not None:
            raise RuntimeError("redis-server exited")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, immediate: bool = True) -> None:
        """Stop it; by default with SIGKILL (what a crash looks like to the nodes)."""
        end(self.pid, signal.SIGKILL if immediate else signal.SIGTERM)
        self._proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None
