"""History growth: the same operations on a fresh database and on grown ones (issue 14).

    python -m bench.history generate --messages 10000000 --conversations 100000 --out DIR
    python -m bench.history run [--quick] [--sizes 0 1000000 3000000 10000000]
    python -m bench.history run --backend postgresql [--sizes …]   # bench/history_pg.py
    python -m bench.run --only history     # the same, and its section of docs/bench-results.md

On each database (``0``: a fresh one; else one made by ``bench.history_gen``, cached in
``--cache`` and reused while the generator's parameters are the same), a server is started on
a copy of it (``bench.common.run_on_fresh_server(..., database=...)``) and measures:

- one-to-one p99 send→delivery at 2,000 msgs/s offered (``bench.p2p.latency``; its 100 pairs
  are conversations with long histories on a grown database); on another server (another
  copy) the most one-to-one messages/s over TCP (``bench.p2p.throughput``, the same pairs);
- a login of a user with a backlog of 1,000 messages over 50 conversations (50 peers send 20
  each first): to the login answer, and to the last backlog message;
- a history page (20 messages) of one of those conversations; a sync page (200 messages)
  from the positions before the backlog; a whole sync to its last page (which lists every
  conversation with unread counts).

Each operation is timed several times on the same server; the median is reported in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import SECRET, Conn, connect, copy_database, run_on_fresh_server
from bench.history_gen import LOGIN_PEERS, LOGIN_USER, PAIRS, generate
from imhub.service.auth import TokenAuthority

if TYPE_CHECKING:
    from tests.databases import Database

PER_PEER = 20  # backlog messages from each of the LOGIN_PEERS peers
HISTORY_LIMIT = 20
SYNC_LIMIT = 200
GENERATOR_VERSION = 2  # bump when history_gen writes something else: cached files are redone
SIZES = (0, 1_000_000, 3_000_000, 10_000_000)
MESSAGES_PER_CONVERSATION = 100  # 10 million messages in 100,000 conversations
CACHE = Path("/tmp/imhub-history")  # generated databases, kept between runs


class Inbox:
    """A bench connection whose messages are read in order with a time limit."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.conn: Conn | None = None

    @classmethod
    async def login(cls, port: int, user: int, backlog: bool = False) -> Inbox:
        box = cls()
        box.conn = await connect("tcp", port, box.queue.put_nowait)
        box.send({"msgType": 1, "token": TokenAuthority(SECRET).mint(user), "backlog": backlog})
        answer = await box.next_of(1)
        assert answer["code"] == 0, answer
        return box

    def send(self, obj: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.write(obj)

    async def next_of(self, msg_type: int) -> dict[str, Any]:
        """The next message of ``msg_type`` (within a minute); others before it are dropped."""
        async with asyncio.timeout(60):
            while True:
                msg = await self.queue.get()
                if msg["msgType"] == msg_type:
                    return msg
                assert msg["msgType"] != 8, msg  # an error answers nothing we wait for

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


async def _backlog(port: int) -> dict[int, int]:
    """The peers send PER_PEER messages each to LOGIN_USER; chat id -> seq before them."""
    before: dict[int, int] = {}
    stamp = time.time_ns()
    for j in range(1, LOGIN_PEERS + 1):
        peer = await Inbox.login(port, LOGIN_USER + j)
        for i in range(PER_PEER):
            peer.send({"msgType": 3, "toUserId": LOGIN_USER, "msgIdClient": f"b{stamp}-{i}",
                       "body": f"backlog {i}"})  # fmt: skip
        answers = [await peer.next_of(4) for _ in range(PER_PEER)]
        assert all(a["code"] == 0 for a in answers), answers
        before[answers[0]["chatId"]] = answers[0]["seq"] - 1
        peer.close()
    return before


async def _login(port: int) -> tuple[float, float]:
    """ms to the login answer, and to the last of the backlog's messages."""
    box = Inbox()
    box.conn = await connect("tcp", port, box.queue.put_nowait)
    t0 = time.perf_counter()
    box.send({"msgType": 1, "token": TokenAuthority(SECRET).mint(LOGIN_USER)})
    answer = await box.next_of(1)
    t_answer = time.perf_counter()
    assert answer["code"] == 0 and len(answer["unread"]) == LOGIN_PEERS, answer
    seen: dict[int, list[int]] = {}
    for _ in range(LOGIN_PEERS * PER_PEER):
        msg = await box.next_of(7)
        seen.setdefault(msg["chatId"], []).append(msg["seq"])
    t_all = time.perf_counter()
    assert all(s == sorted(s) and len(s) == PER_PEER for s in seen.values()), seen
    box.close()
    return (t_answer - t0) * 1000, (t_all - t0) * 1000


async def _timed(box: Inbox, request: dict[str, Any], answer_type: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    box.send(request)
    answer = await box.next_of(answer_type)
    assert answer["code"] == 0, answer
    return (time.perf_counter() - t0) * 1000, answer


async def operations(port: int, tries: int = 7) -> dict[str, Any]:
    """Login with a backlog, a history page, a sync page and a whole sync: medians in ms."""
    before = await _backlog(port)
    chats = sorted(before)
    logins = [await _login(port) for _ in range(tries)]
    box = await Inbox.login(port, LOGIN_USER)
    history, sync_page, sync_all = [], [], []
    for i in range(3 * tries):
        chat = chats[i % len(chats)]
        ms, page = await _timed(box, {"msgType": 14, "chatId": chat, "limit": HISTORY_LIMIT}, 14)
        assert len(page["messages"]) == HISTORY_LIMIT, page
        history.append(ms)
    positions = {c: s for c, s in before.items()}
    for _ in range(tries):
        convs = [{"chatId": c, "seq": s} for c, s in positions.items()]
        ms, page = await _timed(box, {"msgType": 11, "convs": convs, "limit": SYNC_LIMIT}, 11)
        assert len(page["messages"]) == SYNC_LIMIT and page["more"], page
        sync_page.append(ms)
        t0 = time.perf_counter()
        got = len(page["messages"])
        held = dict(positions)
        while page["more"]:
            for m in page["messages"]:
                held[m["chatId"]] = m["seq"]
            convs = [{"chatId": c, "seq": s} for c, s in held.items()]
            _, page = await _timed(box, {"msgType": 11, "convs": convs, "limit": SYNC_LIMIT}, 11)
            got += len(page["messages"])
        assert got == LOGIN_PEERS * PER_PEER and len(page["convs"]) >= LOGIN_PEERS, got
        sync_all.append(ms + (time.perf_counter() - t0) * 1000)
    box.close()
    med = statistics.median
    return {
        "login_answer_ms": round(med(a for a, _ in logins), 2),
        "login_backlog_ms": round(med(b for _, b in logins), 2),
        "history_page_ms": round(med(history), 2),
        "sync_page_ms": round(med(sync_page), 2),
        "sync_all_ms": round(med(sync_all), 2),
    }


async def _workloads(port: int, pid: int, seconds: float) -> dict[str, Any]:
    from bench import p2p

    lat = await p2p.latency(port, "tcp", rate=2000, pairs=PAIRS, seconds=seconds)
    ops = await operations(port)
    return {
        "p99_2000_ms": lat["deliver_p99_ms"],
        "p50_2000_ms": lat["deliver_p50_ms"],
        "complete": lat["complete"] and lat["lost"] == 0,
        **ops,
    }


async def _throughput(port: int, pid: int, seconds: float) -> dict[str, Any]:
    """On a server of its own: its client ids would be taken for retries of the latency's."""
    from bench import p2p

    most = await p2p.throughput(port, "tcp", pairs=PAIRS, seconds=seconds)
    return {"tcp_msgs_per_s": most["msgs_per_s"], "complete": most["complete"]}


def grown(cache: Path, messages: int) -> tuple[Path, dict[str, Any]]:
    """The database of ``messages`` messages, made unless a matching one is cached."""
    conversations = max(1000, messages // MESSAGES_PER_CONVERSATION)
    where = cache / f"m{messages}-c{conversations}-v{GENERATOR_VERSION}"
    made = where / "made.json"
    if made.exists():
        return where / "imhub.db", dict(json.loads(made.read_text()))
    stats = generate(where, messages, conversations)
    made.write_text(json.dumps(stats))
    print(json.dumps({"generated": stats}), flush=True)
    return where / "imhub.db", stats


def grown_database(folder: Path, messages: int, cache: Path = CACHE) -> Database:
    """A copy in ``folder`` of the grown SQLite database of ``messages`` messages (made once,
    then cached), as a ``Database`` for ``bench.backends.Imhub``: how ``bench.ratios`` (or
    any bench started that way) runs its workloads on a grown database instead of
    ``Backend.fresh`` (users 1..20,000 at least exist already)."""
    from tests.databases import Database

    source, _ = grown(cache, messages)
    path = folder / "imhub.db"
    copy_database(source, path)
    return Database(f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}", "sqlite")


def run(sizes: tuple[int, ...], repeat: int, cache: Path, seconds: float) -> list[dict[str, Any]]:
    """Every size, ``repeat`` times, one server (on a copy of the database) per run; the
    sizes take turns, so that a noisy minute on the shared machine does not land on one."""
    dbs = {n: grown(cache, n) if n else (None, {}) for n in sizes}
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for i in range(repeat):
        for n in sizes:
            started, load1 = time.perf_counter(), os.getloadavg()[0]
            result = run_on_fresh_server(
                lambda port, pid: _workloads(port, pid, seconds),
                users=LOGIN_USER + LOGIN_PEERS,
                database=dbs[n][0],
            )
            most = run_on_fresh_server(
                lambda port, pid: _throughput(port, pid, seconds), PAIRS * 2, dbs[n][0]
            )
            result["complete"] = result["complete"] and most["complete"]
            result["tcp_msgs_per_s"] = most["tcp_msgs_per_s"]
            result["run_s"] = round(time.perf_counter() - started, 1)  # the copies included
            result["load1"] = round(load1, 2)
            print(json.dumps({"label": f"history {n}", "repeat": i, **result}), flush=True)
            runs[n].append(result)
    return [{"stored": n, "db_mib": dbs[n][1].get("db_mib", 0), "runs": runs[n]} for n in sizes]


def family(quick: bool, repeat: int, about: dict[str, Any], cache: Path = CACHE) -> str:
    """``bench.run --only history``: the runs (kept in bench/results.jsonl), the plot
    docs/history-growth.png and the ``history`` section of docs/bench-results.md."""
    from bench.history_report import plot, write_section

    sizes = (0, 1_000_000) if quick else SIZES
    rows = run(sizes, repeat, cache, 3 if quick else 5)
    with open(Path(__file__).parent / "results.jsonl", "a") as out:
        for row in rows:
            for i, result in enumerate(row["runs"]):
                record = {"label": f"history {row['stored']}", "repeat": i, **result}
                out.write(json.dumps({**record, "stored": row["stored"], "machine": about}) + "\n")
    plot(rows)
    return write_section(rows, about, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a grown database")
    gen.add_argument("--messages", type=int, default=10_000_000)
    gen.add_argument("--conversations", type=int, default=100_000)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--seed", type=int, default=1)
    bench = sub.add_parser("run", help="the workloads on fresh and grown databases")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--sizes", type=int, nargs="+")
    bench.add_argument("--repeat", type=int)
    bench.add_argument("--cache", type=Path, default=CACHE)
    bench.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.command == "generate":
        print(json.dumps(generate(args.out, args.messages, args.conversations, args.seed)))
        return
    from bench.history_report import summary

    sizes = tuple(args.sizes or ((0, 1_000_000) if args.quick else SIZES))
    repeat, seconds = args.repeat or (1 if args.quick else 3), 3 if args.quick else 5
    if args.backend == "postgresql":
        from bench.history_pg import run_postgres

        rows = run_postgres(sizes, repeat, seconds)
    else:
        rows = run(sizes, repeat, args.cache, seconds)
    print(summary(rows))


if __name__ == "__main__":
    main()
