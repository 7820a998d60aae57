"""Nodes (``imhub serve --cluster``) on one PostgreSQL database and one Redis, from the shared
throw-away services (tests/services.py: in CI a missing one fails the tests)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import Database, Databases
from tests.helpers import ServerProcess
from tests.services import Redis, wait_until


@pytest.fixture
def postgres_db(database_factories: Callable[[str], Databases], tmp_path: Path) -> Database:
    """A fresh migrated database on the session's PostgreSQL, for this test's nodes."""
    return database_factories("postgresql").fresh(tmp_path)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test's own: nodes of earlier tests leave presence and liveness entries
    behind, and the same user ids recur in every fresh database."""
    server = Redis(tmp_path / "redis")
    yield server
    server.stop()


class Node(ServerProcess):
    """``imhub serve --cluster``: one node, on a database shared with the others; its log (at
    INFO) is kept in a file for the tests to read."""

    def __init__(self, data_dir: Path, database: Database, **options: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = (data_dir / "stderr.log").open("w")
        super().__init__(data_dir, database, **{"log_level": "INFO", **options})

    def log(self) -> str:
        return (self.data_dir / "stderr.log").read_text()


def linked(node: Node) -> bool:
    """The node's cluster bus is up: ``/readyz`` reports no degradation."""
    with urllib.request.urlopen(node.url + "/readyz", timeout=5) as answer:
        return "degraded" not in json.loads(answer.read())


@pytest.fixture
def cluster(
    postgres_db: Database, redis_server: Redis, tmp_path: Path
) -> Iterator[Callable[..., list[Node]]]:
    """``cluster(3)``: three nodes on a fresh database and this test's Redis."""
    nodes: list[Node] = []

    def start(n: int, **options: Any) -> list[Node]:
        made = [
            Node(tmp_path / f"node{len(nodes) + i}", postgres_db, cluster=redis_server.url,
                 **options)
            for i in range(n)
        ]  # fmt: skip
        nodes.extend(made)
        if redis_server.running:
            for node in made:  # a node listens after at most 3 s even if its link is not made
                wait_until(lambda node=node: linked(node), f"the bus link of {node.url}")
        return made

    yield start
    for node in nodes:
        with contextlib.suppress(Exception):
            node.stop()
