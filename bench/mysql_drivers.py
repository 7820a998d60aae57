"""asyncmy against aiomysql on MariaDB, through SQLAlchemy as imhub uses them: a batch insert
(500-row multi-row INSERTs, as the writer sends a batch of messages) and small commits (one
row per transaction, a writer under light load), on a throw-away MariaDB server started here
(``tests.services``). Results go to docs/performance.md.

    PYTHONPATH=src:. .venv/bin/python -m bench.mysql_drivers [--rows 20000] [--commits 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from itertools import chain
from pathlib import Path

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from imhub.storage.database import create_engine
from tests.services import MariaDB

DDL = (
    "CREATE TABLE m (id BIGINT AUTO_INCREMENT PRIMARY KEY, conv BIGINT NOT NULL,"
    " seq BIGINT NOT NULL, body TEXT NOT NULL, mid VARCHAR(50) NOT NULL,"
    " UNIQUE KEY (conv, seq)) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
)


async def batch_insert(engine: AsyncEngine, rows: int, chunk: int = 500) -> float:
    """Rows per second, ``chunk`` rows per INSERT … RETURNING and per commit."""
    began = time.perf_counter()
    async with engine.connect() as conn:
        for start in range(0, rows, chunk):
            part = [(1, start + i, "hello there 12345", f"m{start + i}") for i in range(chunk)]
            marks = ", ".join(["(%s, %s, %s, %s)"] * len(part))
            async with conn.begin():
                result = await conn.exec_driver_sql(
                    f"INSERT INTO m (conv, seq, body, mid) VALUES {marks} RETURNING id",
                    tuple(chain.from_iterable(part)),
                )
                assert len(result.all()) == len(part)
    return rows / (time.perf_counter() - began)


async def small_commits(engine: AsyncEngine, commits: int) -> float:
    """Commits per second, one row each."""
    began = time.perf_counter()
    async with engine.connect() as conn:
        for i in range(commits):
            async with conn.begin():
                await conn.exec_driver_sql(
                    "INSERT INTO m (conv, seq, body, mid) VALUES (%s, %s, %s, %s)",
                    (2, i, "hello there 12345", f"s{i}"),
                )
    return commits / (time.perf_counter() - began)


async def measure(url: str, rows: int, commits: int) -> tuple[float, float]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS m")
        await conn.exec_driver_sql(DDL)
    try:
        return await batch_insert(engine, rows), await small_commits(engine, commits)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--commits", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imhub-bench-"))
    server = MariaDB(root)
    try:
        server.admin("CREATE DATABASE bench CHARACTER SET utf8mb4")
        for round_ in range(args.rounds):  # interleaved, so drift hits both alike
            for driver in ("asyncmy", "aiomysql"):
                batch, small = uvloop.run(measure(server.url("bench", driver), args.rows,
                                                  args.commits))  # fmt: skip
                print(f"round {round_ + 1} {driver:9} batch insert {batch:9,.0f} rows/s"
                      f"   small commits {small:7,.0f} /s")  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
