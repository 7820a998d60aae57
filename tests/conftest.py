"""Fixtures: real server processes on free ports, each with a database of its own, on SQLite
by default; the storage, e2e and client packages run on every backend (``backend``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import (
    BACKENDS,
    Databases,
    MariaDatabases,
    PostgresDatabases,
    SqliteDatabases,
)
from tests.helpers import ServerProcess
from tests.services import Redis


@pytest.fixture(scope="session")
def database_factories(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Databases]]:
    """The factory of fresh databases of each backend, its server started on first use and
    stopped at the end of the session."""
    made: dict[str, Databases] = {}

    def get(backend: str) -> Databases:
        if backend not in made:
            if backend == "sqlite":
                made[backend] = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
            elif backend == "postgresql":
                made[backend] = PostgresDatabases()
            elif backend == "mariadb":
                made[backend] = MariaDatabases(tmp_path_factory.mktemp("mariadb"))
            else:
                raise ValueError(f"no backend {backend!r} (one of {BACKENDS})")
        return made[backend]

    yield get
    for factory in made.values():
        factory.close()


# The packages whose tests run on every backend; the others run on SQLite.
EVERY_BACKEND = ("storage", "e2e", "client")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of those packages that uses a database (``backend``, directly or through
    ``server``, ``make_server``, ``databases``) runs once per backend (``-k postgresql``)."""
    parts = Path(metafunc.definition.path).parts
    package = parts[parts.index("tests") + 1] if "tests" in parts else ""
    if "backend" in metafunc.fixturenames and package in EVERY_BACKEND:
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The database under the servers of a test: one of ``BACKENDS`` where the test is
    parametrized (above), SQLite elsewhere."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def databases(backend: str, database_factories: Callable[[str], Databases]) -> Databases:
    return database_factories(backend)


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases
) -> Iterator[ServerProcess]:
    """One server shared by the tests that need no special configuration (each makes its own
    users, so they do not see each other)."""
    proc = ServerProcess(tmp_path_factory.mktemp("shared"), databases)
    yield proc
    proc.stop()


@pytest.fixture
def server_class() -> type[ServerProcess]:
    """The kind of server ``make_server`` starts (a module may watch its servers' logs)."""
    return ServerProcess


@pytest.fixture
def make_server(
    tmp_path: Path, databases: Databases, server_class: type[ServerProcess]
) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server of its own with ``IMHUB_*`` options, e.g. ``make_server(idle_timeout=1)``.
    ``database=`` another server's ``database`` puts it beside that one."""
    started: list[ServerProcess] = []

    def start(**options: Any) -> ServerProcess:
        where = options.pop("database", None) or databases
        proc = server_class(tmp_path / f"server{len(started)}", where, **options)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """A Redis of the session's own (``stop``/``start``/``restart`` it to test outages)."""
    redis = Redis(tmp_path_factory.mktemp("redis"))
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: Redis) -> str:
    return redis_server.url
