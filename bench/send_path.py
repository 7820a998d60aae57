"""The send path without sockets: CPU per stored one-to-one message, in one process.

The real ``App`` (dispatcher, chat service, batched writer, SQLite on a fresh file) with
sessions whose outlets keep nothing: PAIRS senders keep WINDOW messages in flight, each
``chat_answer`` lets its sender send the next. What it leaves out (sockets, framing, the
load generator) is what ``p2p_throughput`` adds, so the two together say where time goes.
CPU includes SQLite's thread. Not part of ``make bench``; for profiling work:

    taskset -c 0 .venv/bin/python -m bench.send_path            # 100,000 messages
    taskset -c 0 .venv/bin/python -m bench.send_path --profile  # and the top of cProfile
    taskset -c 0 .venv/bin/python -m bench.send_path --pairs 1 --window 1 -n 3000
                                                   # one message per batch: the fixed cost
    PYTHONPATH=src:. .venv/bin/python -m bench.send_path --backend postgresql
                                    # on a throw-away PostgreSQL (or mariadb) started here,
                                    # with the tests' settings (no fsync): CPU, not the disk
    taskset -c 0 .venv/bin/python -m bench.send_path --pairs 1 --window 1 -n 3000 \
        --durability os             # the fixed cost per commit without its fsync
    PYTHONPATH=src:. .venv/bin/python -m bench.send_path --backend postgresql --durable ...
                                    # PostgreSQL fsyncing its commits (bench/backends.py)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import uvloop
from sqlalchemy import insert

from imhub.app import App
from imhub.config import Config
from imhub.protocol import codec
from imhub.service.sessions import Session
from imhub.storage.models import users_table

ANSWER = b'{"msgType":4'


class _Outlet:
    """Keeps nothing; a sender's outlet counts its answers."""

    __slots__ = ("answered",)

    def __init__(self, answered: asyncio.Queue[None] | None = None) -> None:
        self.answered = answered

    def send(self, payload: bytes) -> None:
        if self.answered is not None and payload.startswith(ANSWER):
            self.answered.put_nowait(None)

    def close(self) -> None:
        pass


def _message(to_user: int, n: int) -> bytes:
    return b'{"msgType":3,"toUserId":%d,"body":"hello there 12345","msgIdClient":"%d"}' % (
        to_user,
        n,
    )


async def _run(
    data: Path, url: str, pairs: int, window: int, total: int, profile: bool, durability: str
) -> None:
    config = Config(data_dir=data, database_url=url, token_secret="s" * 32, api_key="k" * 32)
    app = App(replace(config, durability=durability))  # type: ignore[arg-type]
    async with app.engine.begin() as conn:
        await conn.execute(
            insert(users_table),
            [{"username": f"u{i}", "mobile": "", "head_img": ""} for i in range(1, 2 * pairs + 1)],
        )
    app.writer.start()
    dispatcher = app.gateway.dispatcher
    answered: asyncio.Queue[None] = asyncio.Queue()
    senders: list[Session] = []
    for k in range(pairs):
        sender = Session(_Outlet(answered), 0.0)
        sender.user_id = 2 * k + 1
        receiver = Session(_Outlet(), 0.0)
        receiver.user_id = 2 * k + 2
        app.registry.add(sender)
        app.registry.add(receiver)
        senders.append(sender)
    sent = 0

    def send(k: int) -> None:
        nonlocal sent
        sent += 1
        dispatcher.handle(senders[k], codec.decode(_message(2 * k + 2, sent)))

    prof = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for k in range(pairs):
        for _ in range(window):
            send(k)
    done = 0
    while done < total:
        await answered.get()
        done += 1
        if sent < total:
            send(sent % pairs)
    if prof:
        prof.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{total / wall:,.0f} msgs/s, {cpu / total * 1e6:.1f} µs CPU per message")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    await app.writer.close()
    await app.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "mariadb"], default="sqlite")
    parser.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    parser.add_argument("--durable", action="store_true", help="database servers that fsync")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        url, stop = _database(args.backend, data, args.durable)
        try:
            subprocess.run(
                [sys.executable, "-m", "imhub", "migrate", "--database-url", url],
                check=True,
                capture_output=True,
            )
            uvloop.run(
                _run(data, url, args.pairs, args.window, args.n, args.profile, args.durability)
            )
        finally:
            stop()


def _database(backend: str, data: Path, durable: bool = False) -> tuple[str, Callable[[], None]]:
    """A fresh database's URL, and how to stop its server (test services: no fsync, unless
    ``durable``)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{data / 'imhub.db'}", lambda: None
    from bench.backends import DurableMariaDB, DurablePostgres
    from tests.services import MariaDB, Postgres

    if backend == "postgresql":
        pg = DurablePostgres() if durable else Postgres()
        pg.admin("CREATE DATABASE bench")
        return pg.url("bench"), pg.remove
    mdb = (DurableMariaDB if durable else MariaDB)(data / "mariadb")
    mdb.admin("CREATE DATABASE bench CHARACTER SET utf8mb4")
    return mdb.url("bench"), mdb.stop


if __name__ == "__main__":
    main()
