"""Fixtures: real server processes on free ports, each with its own SQLite database."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ServerProcess


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty database, copied for every server (migrating once is faster)."""
    data = tmp_path_factory.mktemp("template")
    subprocess.run(
        [sys.executable, "-m", "imhub", "migrate", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    return data / "imhub.db"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[ServerProcess]:
    """One server shared by the tests that need no special configuration (each makes its own
    users, so they do not see each other)."""
    proc = ServerProcess(tmp_path_factory.mktemp("shared"), template_db)
    yield proc
    proc.stop()


@pytest.fixture
def server_class() -> type[ServerProcess]:
    """The kind of server ``make_server`` starts (a module may watch its servers' logs)."""
    return ServerProcess


@pytest.fixture
def make_server(
    tmp_path: Path, template_db: Path, server_class: type[ServerProcess]
) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server of its own with ``IMHUB_*`` options, e.g. ``make_server(idle_timeout=1)``."""
    started: list[ServerProcess] = []

    def start(**options: Any) -> ServerProcess:
        proc = server_class(tmp_path / f"server{len(started)}", template_db, **options)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
