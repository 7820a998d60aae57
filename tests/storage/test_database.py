"""SQLite settings: small pages for new files; commits leave the WAL alone and the
checkpointer copies it into the database beside them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from imhub.storage.database import PAGE_SIZE, Checkpointer, checkpoint, create_engine

ROWS = 2_000
ROW = "x" * 2_000  # ~4 MB in all: the WAL passes SQLite's own 1,000-page checkpoint mark


async def test_new_databases_use_small_pages(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'imhub.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key)"))
        assert (await conn.execute(text("pragma page_size"))).scalar() == PAGE_SIZE == 2048
    await engine.dispose()


async def test_commits_do_not_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "imhub.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key, body text)"))
    for _ in range(ROWS // 100):
        async with engine.begin() as conn:
            await conn.execute(text("insert into t (body) values (:b)"), [{"b": ROW}] * 100)
    assert path.stat().st_size < 1_000_000  # the pages are all still in the WAL
    async with engine.connect() as conn:
        busy, wal_pages, copied = await checkpoint(conn)
    assert busy == 0
    assert wal_pages > 1_000
    assert copied == wal_pages
    assert path.stat().st_size > ROWS * len(ROW)
    await engine.dispose()


async def test_checkpointer_copies_the_wal_while_running(tmp_path: Path) -> None:
    path = tmp_path / "imhub.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key, body text)"))
        await conn.execute(text("insert into t (body) values (:b)"), [{"b": ROW}] * ROWS)
    assert path.stat().st_size < 1_000_000
    checkpointer = Checkpointer(engine, interval=0.01)
    checkpointer.start()
    await asyncio.wait_for(checkpointer.ran.wait(), 10)
    await checkpointer.stop()
    assert checkpointer.last is not None
    busy, wal_pages, copied = checkpointer.last
    assert (busy, copied) == (0, wal_pages)
    assert path.stat().st_size > ROWS * len(ROW)
    async with engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from t"))).scalar() == ROWS
    await engine.dispose()
