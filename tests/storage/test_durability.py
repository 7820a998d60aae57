"""The durability level reaches the database: each connection of the engine commits as asked
(read back from the database itself), and a level a backend cannot give is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from imhub.storage.database import commit_setting, create_engine
from tests.databases import Databases


async def setting(url: str, durability: str) -> tuple[str, bool]:
    engine = create_engine(url, durability)
    try:
        return await commit_setting(engine)
    finally:
        await engine.dispose()


async def test_each_level_is_what_the_database_does(
    backend: str, databases: Databases, tmp_path: Path
) -> None:
    url = databases.fresh(tmp_path).url
    fsync = await setting(url, "fsync")
    if backend == "sqlite":
        assert fsync == ("SQLite synchronous=FULL", True)
        assert await setting(url, "os") == ("SQLite synchronous=NORMAL", False)
    elif backend == "postgresql":
        # The tests' PostgreSQL runs with fsync=off (tests/services.py): said, not hidden.
        assert fsync == ("PostgreSQL synchronous_commit=on, fsync=off", False)
        text, _ = await setting(url, "os")
        assert text == "PostgreSQL synchronous_commit=off, fsync=off"
    else:
        # The server's own setting (2 in the tests' MariaDB), whatever imhub was given.
        assert fsync == ("MySQL/MariaDB innodb_flush_log_at_trx_commit=2", False)
        with pytest.raises(ValueError, match="innodb_flush_log_at_trx_commit = 2 on the server"):
            create_engine(url, "os")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="durability: expected one of 'fsync', 'os'"):
        create_engine("sqlite+aiosqlite:///:memory:", "disk")
