"""Throw-away PostgreSQL and Redis for the cluster tests, and nodes (``imhub serve --cluster``)
on one database. (To be replaced by the shared service fixtures, tests/services.py.)

In CI (``CI=true``) a missing PostgreSQL or Redis fails the tests; elsewhere they are skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import API_KEY, SECRET, ServerProcess

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_dbs = itertools.count(1)


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed (CI needs it)")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        data = root / "data"
        root.mkdir(parents=True)
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_pg:
            shutil.chown(root, "postgres")
        run = lambda *args: subprocess.run([*as_pg, *args], check=True, capture_output=True)  # noqa: E731
        self._as_pg = as_pg
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip
        self.psql("create database template_im")
        env = {**os.environ, "IMHUB_DATABASE_URL": self.url("template_im")}
        subprocess.run([sys.executable, "-m", "imhub", "migrate"], env=env, check=True,
                       capture_output=True)  # fmt: skip

    def url(self, db: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-tAc", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    def fresh(self) -> str:
        """A new migrated database (a copy of the template)."""
        name = f"im{next(_dbs)}"
        self.psql(f"create database {name} template template_im")
        return name

    def stop(self) -> None:
        subprocess.run(
            [*self._as_pg, str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m",
             "immediate", "stop"],
            capture_output=True,
        )  # fmt: skip


class Redis:
    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # wait for its readiness line
            if b"Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        _missing("PostgreSQL 15")
    # Not under pytest's folder: it is private to root, and PostgreSQL runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="imhub-pg-"))
    root.chmod(0o755)
    pg = Postgres(root / "pg")
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    server = Redis(tmp_path / "redis")
    yield server
    server.stop()


class Node(ServerProcess):
    """``imhub serve --cluster``: one node, on the shared database."""

    def __init__(self, data_dir: Path, **options: Any) -> None:  # no SQLite file to copy
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = (data_dir / "stderr.log").open("w")
        self.env = {
            **os.environ,
            "IMHUB_DATA_DIR": str(data_dir),
            "IMHUB_PORT": "0",
            "IMHUB_TOKEN_SECRET": SECRET,
            "IMHUB_API_KEY": API_KEY,
            "IMHUB_LOG_LEVEL": "INFO",
        }
        for key, value in options.items():
            self.env["IMHUB_" + key.upper()] = str(value)
        from imhub.service.auth import TokenAuthority

        self.auth = TokenAuthority(SECRET)
        self._spawn()

    def log(self) -> str:
        return (self.data_dir / "stderr.log").read_text()


@pytest.fixture
def cluster(
    postgres: Postgres, redis_server: Redis, tmp_path: Path
) -> Iterator[Callable[..., list[Node]]]:
    """``cluster(3)``: three nodes on a fresh database and this test's Redis."""
    nodes: list[Node] = []
    db = postgres.url(postgres.fresh())

    def start(n: int, **options: Any) -> list[Node]:
        made = [
            Node(tmp_path / f"node{len(nodes) + i}", database_url=db, cluster=redis_server.url,
                 **options)
            for i in range(n)
        ]  # fmt: skip
        nodes.extend(made)
        return made

    yield start
    for node in nodes:
        with contextlib.suppress(Exception):
            node.stop()
