"""SQLite settings: small pages for new files, and a WAL that stays small under a busy
writer (its own commits checkpoint it, so it starts over)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.storage.database import PAGE_SIZE, create_engine
from imhub.storage.writer import BatchWriter

ROW = "x" * 2_000


async def test_new_databases_use_small_pages(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'imhub.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key)"))
        assert (await conn.execute(text("pragma page_size"))).scalar() == PAGE_SIZE == 2048
    await engine.dispose()


class _InsertRows:
    """A writer kind that stores its items as rows of ``t``."""

    async def run(self, conn: AsyncConnection, items: Sequence[str]) -> list[None]:
        await conn.execute(text("insert into t (body) values (:b)"), [{"b": b} for b in items])
        return [None] * len(items)


async def test_the_wal_stays_small_under_sustained_writes(tmp_path: Path) -> None:
    """20 MB through the writer in small batches, never idle: the WAL file stays a fraction of
    it, and everything is in the database file."""
    path = tmp_path / "imhub.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key, body text)"))
    writer = BatchWriter(engine, batch_max=20)
    writer.start()
    kind = _InsertRows()
    for _ in range(20):  # 500 rows of 2 KB at a time, so the queue never runs dry
        await asyncio.gather(*(writer.call(kind, ROW) for _ in range(500)))
    wal_size = path.with_name(path.name + "-wal").stat().st_size
    file_size = path.stat().st_size
    await writer.close()
    assert wal_size < 5_000_000
    assert file_size > 15_000_000  # all but the last checkpoint's worth
    async with engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from t"))).scalar() == 10_000
    await engine.dispose()
