"""SQLite settings: small pages for new files; commits that never checkpoint; and a WAL that
stays small under a writer that never idles (the checkpointer copies it beside the writer,
the writer finishes each round between batches, so it starts over)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from imhub.protocol.errors import ErrorCode, ImError
from imhub.storage.bulk import Script
from imhub.storage.database import PAGE_SIZE, Checkpointer, checkpoint, create_engine
from imhub.storage.outage import UNAVAILABLE
from imhub.storage.staged import Transaction
from imhub.storage.writer import BatchWriter

ROW = "x" * 2_000


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
    for _ in range(20):  # 4 MB in 20 commits: past SQLite's own 1,000-page mark
        async with engine.begin() as conn:
            await conn.execute(text("insert into t (body) values (:b)"), [{"b": ROW}] * 100)
    assert path.stat().st_size < 1_000_000  # all of it still in the WAL
    async with engine.connect() as conn:
        busy, wal_pages, copied = await checkpoint(conn)
    assert (busy, copied) == (0, wal_pages) and wal_pages > 1_000
    assert path.stat().st_size > 2_000 * len(ROW)
    await engine.dispose()


class _InsertRows:
    """A writer kind that stores its items as rows of ``t``."""

    async def run(self, conn: AsyncConnection, items: Sequence[str]) -> list[None]:
        await conn.execute(text("insert into t (body) values (:b)"), [{"b": b} for b in items])
        return [None] * len(items)


async def test_the_wal_stays_small_under_sustained_writes(tmp_path: Path) -> None:
    """20 MB through the writer in small batches, never idle, with the checkpointer running:
    the WAL file stays a fraction of it, and the rest is in the database file."""
    path = tmp_path / "imhub.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key, body text)"))
    checkpointer = Checkpointer(engine, interval=0.005)
    writer = BatchWriter(
        engine, Transaction(), batch_max=20, between_batches=checkpointer.between_batches
    )
    writer.start()
    checkpointer.start()
    kind = _InsertRows()
    for _ in range(20):  # 500 rows of 2 KB at a time, so the queue never runs dry
        await asyncio.gather(*(writer.call(kind, ROW) for _ in range(500)))
    wal_size = path.with_name(path.name + "-wal").stat().st_size
    file_size = path.stat().st_size
    await checkpointer.stop()
    await writer.close()
    assert wal_size < 5_000_000
    assert file_size > 15_000_000  # all but the last checkpoint's worth
    async with engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from t"))).scalar() == 10_000
    await engine.dispose()


_t = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("body", Text))


class _ScriptRows:
    """A writer kind that stores its items as the hot path does (``bulk.Script``: the
    statements on the loop's thread, raw ``sqlite3`` errors)."""

    async def run(self, conn: AsyncConnection, items: Sequence[str]) -> list[None]:
        script = Script(conn.dialect)
        script.insert_returning(_t, ("body",), [(b,) for b in items], ("id",))
        await script.run(conn)
        return [None] * len(items)


@pytest.mark.parametrize("kind", [_InsertRows(), _ScriptRows()], ids=["sqlalchemy", "script"])
async def test_a_full_disk_is_an_outage_said_once_not_a_bug_per_message(
    tmp_path: Path, kind: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A database file that cannot grow (here SQLite's own page limit: the same "database or
    disk is full" a full disk gives) fails every write alike: each is refused as retryable,
    and the log says so once, without a traceback or an ERROR per message (an outside tester
    filled a disk and got 4,386 lines in 4 s)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'imhub.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _small_disk(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA max_page_count = 60")  # 120 KiB
        cur.close()

    async with engine.begin() as conn:
        await conn.execute(text("create table t (id integer primary key, body text)"))
    writer = BatchWriter(engine, Transaction())
    writer.start()
    refused: list[ImError] = []

    async def store(body: str) -> None:
        try:
            await writer.call(kind, body)  # type: ignore[arg-type]
        except ImError as exc:
            refused.append(exc)

    with caplog.at_level(logging.INFO):
        for _ in range(20):
            await asyncio.gather(*(store(ROW) for _ in range(20)))
    await writer.close()
    await engine.dispose()
    assert len(refused) > 300  # the first few dozen fit
    assert {(e.code, e.reason) for e in refused} == {(ErrorCode.INTERNAL, UNAVAILABLE)}
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and "database unavailable" in loud[0].getMessage(), loud
    assert all(r.exc_info is None for r in caplog.records)
