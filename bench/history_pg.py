"""The grown database of ``bench.history_gen`` on PostgreSQL: the same rows, written with COPY.

    python -m bench.history_pg --messages 10000000 --conversations 100000 \\
        --url postgresql+asyncpg://postgres@127.0.0.1:PORT/DB

The database named by ``--url`` must exist and be empty; it is migrated first (``imhub
migrate``'s own code), then each table is filled with one binary COPY (asyncpg), and the id
sequences are moved past the ids written, so the server's next rows get new ones. ANALYZE at
the end: PostgreSQL's autovacuum would have done it on a server that grew the tables itself.

A bench runs each time on a copy, ``CREATE DATABASE run TEMPLATE grown`` (a file copy in the
server), and gives the server that database's URL (``IMHUB_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.history_gen import (
    DAY_MS,
    MEMBERSHIPS,
    Plan,
    _stats,
    chat_rows,
    person_messages,
    plan,
    team_messages,
    team_rows,
)
from imhub.storage.migrate import upgrade

_PERSON = ("chat_id", "seq", "msg_type", "ref_seq", "from_user_id", "to_user_id", "client_type",
           "body_type", "body", "voice_time", "cancel_flag", "read_flag", "msg_id_client",
           "send_time")  # fmt: skip
_TEAM = ("team_id", "seq", "ref_seq", "msg_type", "from_user_id", "client_type", "body_type",
         "body", "voice_time", "cancel_flag", "read_flag", "read_num", "msg_id_client",
         "send_time")  # fmt: skip
_CHAT = ("chat_id", "event_type", "from_user_id", "to_user_id", "team_id", "last_seq",
         "from_read_seq", "to_read_seq", "join_seq", "from_unread_num", "to_unread_num",
         "leave_seq")  # fmt: skip
_TEAM_ROW = ("team_id", "team_name", "team_admin", "team_admin_name", "last_seq")
_USER = ("user_id", "username", "mobile", "head_img")
# table -> its id column, whose sequence must pass the ids written here
_SEQUENCES = {"users": "user_id", "chat": "chat_id", "team": "team_id"}


def _person(p: Plan, seed: int, t0: int) -> Iterator[tuple[Any, ...]]:
    for chat_id, seq, frm, to, body, mid, sent in person_messages(p, seed, t0):
        yield (chat_id, seq, 3, 0, frm, to, 2, 0, body, 0, False, False, mid, sent)


def _team(p: Plan, seed: int, t0: int) -> Iterator[tuple[Any, ...]]:
    for team_id, seq, kind, frm, body_type, body, mid, sent in team_messages(p, seed, t0):
        yield (team_id, seq, 0, kind, frm, 2, body_type, body, 0, False, False, 0, mid, sent)


async def generate_postgres(
    url: str, messages: int, conversations: int, seed: int = 1
) -> dict[str, Any]:
    """Fill the empty database at ``url`` (a SQLAlchemy asyncpg URL); what was written."""
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, url)
    p = plan(messages, conversations, seed)
    t0 = int(time.time() * 1000) - 31 * DAY_MS
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        users = ((u, f"u{u}", "", "") for u in range(1, p.users + 1))
        await conn.copy_records_to_table("users", records=users, columns=_USER)
        await conn.copy_records_to_table(
            "person_msg", records=_person(p, seed, t0), columns=_PERSON
        )
        await conn.copy_records_to_table("team_msg", records=_team(p, seed, t0), columns=_TEAM)
        chats = ((*row, 0, 0, 0) for row in chat_rows(p, seed))
        await conn.copy_records_to_table("chat", records=chats, columns=_CHAT)
        await conn.execute(MEMBERSHIPS)
        await conn.copy_records_to_table("team", records=team_rows(p), columns=_TEAM_ROW)
        for table, column in _SEQUENCES.items():
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" (SELECT max({column}) FROM {table}))"
            )
        await conn.execute("ANALYZE")
        size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    return _stats(p, time.perf_counter() - started, size)


def run_postgres(sizes: tuple[int, ...], repeat: int, seconds: float) -> list[dict[str, Any]]:
    """``bench.history.run`` on PostgreSQL (durable: fsync on, ``bench.backends``), sharing
    CPU 0 with imhub: each grown database generated once in the run, each run on a copy
    (``TEMPLATE``, file copy), a fresh database per run for size 0. Rows as ``run``'s."""
    import tempfile
    from pathlib import Path

    import uvloop

    from bench.backends import Backend, Imhub
    from bench.history import MESSAGES_PER_CONVERSATION, _throughput, _workloads
    from bench.history_gen import LOGIN_PEERS, LOGIN_USER
    from tests.databases import Database

    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    made: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="imhub-history-pg-") as root:
        backend = Backend("postgresql", Path(root) / "pg")
        server = backend._server
        assert server is not None
        copies = iter(range(1_000_000))

        def database(n: int, folder: Path) -> Database:
            if not n:
                return backend.fresh(folder, LOGIN_USER + LOGIN_PEERS)
            name = f"run_{next(copies)}"
            server.admin(f"CREATE DATABASE {name} TEMPLATE grown_{n} STRATEGY FILE_COPY")
            return Database(server.url(name), server.url(name, "psycopg"), "postgresql")

        try:
            for n in sizes:
                if n:
                    server.admin(f"CREATE DATABASE grown_{n}")
                    convs = max(1000, n // MESSAGES_PER_CONVERSATION)
                    made[n] = asyncio.run(generate_postgres(server.url(f"grown_{n}"), n, convs))
                    print(json.dumps({"generated_postgres": made[n]}), flush=True)
            backend.pin({0})
            for i in range(repeat):
                for n in sizes:
                    result: dict[str, Any] = {"load1": round(os.getloadavg()[0], 2)}
                    for work in (_workloads, _throughput):
                        folder = Path(root) / f"imhub-{n}-{i}-{work.__name__}"
                        db = database(n, folder)
                        imhub = Imhub(folder, db, cpus=[0])
                        try:
                            os.sched_setaffinity(0, {1})
                            part = uvloop.run(work(imhub.port, imhub.pid, seconds))
                        finally:
                            imhub.stop()
                            db.dispose()
                            server.admin(f"DROP DATABASE {db.url.rsplit('/', 1)[1]}")
                        complete = result.get("complete", True) and part.pop("complete")
                        result.update(part, complete=complete)
                    print(json.dumps({"label": f"history pg {n}", "repeat": i, **result}))
                    runs[n].append(result)
        finally:
            backend.close()
    return [{"stored": n, "db_mib": made.get(n, {}).get("db_mib", 0), "runs": runs[n]}
            for n in sizes]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_pg")
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stats = asyncio.run(generate_postgres(args.url, args.messages, args.conversations, args.seed))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
