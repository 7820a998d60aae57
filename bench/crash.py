"""Crash safety: SIGKILL a real ``imhub serve`` under load, again and again, restart it on the
same database each time, and check that nothing it acknowledged was lost or doubled.

    python -m bench.crash --kills 20 --backend sqlite
    python -m bench.crash --kills 20 --backend postgresql
    python -m bench.crash --kills 20 --durability os     # answered before the fsync

Several ``imhub.client`` users (half over TCP, half over WebSocket) send one-to-one and group
messages and recall some of their own; group owners add, remove and rename members, and
create and dissolve groups (``bench.crash_load``). Between kills the load runs a random
0.3–1 s; each kill is aimed in turn (``AIMS``, ``bench.aim``): during a commit, during a
SQLite checkpoint, during PostgreSQL's WAL write, the instant an answer reaches a sender,
right after a restart while the clients come back, or at a random instant. The server is
started again on the same port, the clients reconnect, sync and resend by themselves, and
once they are all online the load goes on to the next kill. At the end the load stops,
every send is answered, every recipient has every message, and ``bench.crash_check``
compares it all with the database and runs the database's own integrity check.
``tests/ops/test_crash.py`` runs the short form (3 kills per backend) in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from bench.aim import Hit, kill_when
from bench.crash_check import Verdict, check, missing_deliveries
from bench.crash_load import Load, Records
from tests.databases import Database, Databases
from tests.helpers import ServerProcess

# The kills' aims, in turn (the CI's 3 kills take the first three). "answers": the moment a
# sender is told its message is stored, while the writer works on the next batch;
# "reconnect": right after a restart, as the first client is back online and the others log
# in, sync and resend what was not answered; "wal" (PostgreSQL): a backend of imhub's
# database writing or syncing the WAL, which a durable server does at each commit (the
# tests' server, without fsync, does it too fast to be seen: "missed" there).
AIMS = {
    "sqlite": ("commit", "checkpoint", "random", "answers", "reconnect"),
    "postgresql": ("commit", "answers", "random", "reconnect", "wal"),
}


class KilledServer(ServerProcess):
    """A server whose log goes to a file (checked for tracebacks at the end)."""

    def __init__(self, data_dir: Path, databases: Databases | Database, **options: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "server.log"
        self.stderr: TextIO = self.log.open("a")
        self.starts: list[float] = []  # seconds from spawn to listening, each start
        super().__init__(data_dir, databases, **options)

    def _spawn(self) -> None:
        began = time.monotonic()
        super()._spawn()
        self.starts.append(time.monotonic() - began)


@dataclass
class Kill:
    aim: str
    hit: str  # what the kill landed in; "missed": fired at the end of the aim's window
    listening: float  # seconds from the kill until the new process listened
    online: float | None  # seconds from the kill until every client was online again (None:
    # killed again first, by a "reconnect" kill)


@dataclass
class Result:
    backend: str
    kills: list[Kill] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    records: Records = field(default_factory=Records)
    tracebacks: int = 0  # tracebacks and ERROR lines in the server's log
    first_start: float = 0.0  # the first start-up, on an empty database, for comparison
    seconds: float = 0.0

    def ok(self) -> bool:
        return self.verdict.ok() and not self.tracebacks

    def summary(self) -> dict[str, Any]:
        v = self.verdict
        online = sorted(k.online for k in self.kills if k.online is not None)
        return {
            "backend": self.backend,
            "kills": len(self.kills),
            "aimed_hits": sum(k.hit != "missed" for k in self.kills if k.aim != "random"),
            "acknowledged": v.acknowledged,
            "recalls": len(self.records.recalls),
            "recalls_undecided": len(self.records.recalls_undecided),
            "group_ops": sum(len(g.ops) for g in self.records.groups),
            "group_ops_undecided": sum(g.undecided for g in self.records.groups),
            "stored": v.stored,
            "stored_before_a_kill_answered_after": self.records.stored_before_a_kill(),
            "lost": v.lost,
            "duplicated": v.duplicated,
            "stored_unanswered": v.unanswered_stored,
            "gaps": v.gaps,
            "undelivered": v.undelivered,
            "misdelivered": v.misdelivered,
            "integrity": v.integrity,
            "tracebacks": self.tracebacks,
            "first_start_s": round(self.first_start, 3),
            "listening_s_median": round(
                sorted(k.listening for k in self.kills)[len(self.kills) // 2], 3
            ),
            "listening_s_max": round(max(k.listening for k in self.kills), 3),
            "online_s_median": round(online[len(online) // 2], 3) if online else None,
            "online_s_max": round(max(online), 3) if online else None,
            "seconds": round(self.seconds, 1),
            "ok": self.ok(),
        }


def _pids(db: Database, sql: str) -> list[int]:
    return [int(p) for (p,) in db.sql(sql)]


# PostgreSQL commits in microseconds here (the tests' server runs without fsync), too fast to
# catch a backend in it. This deferred trigger stretches each COMMIT of imhub's by 50 ms
# while ``crash_aim.on`` is set: it runs inside the COMMIT, before the commit record, once
# per transaction. A kill then lands while imhub waits for its COMMIT, which PostgreSQL
# completes anyway: the case of a write stored but never answered.
STRETCH_COMMITS = """
CREATE TABLE IF NOT EXISTS crash_aim (id int PRIMARY KEY, "on" boolean NOT NULL);
INSERT INTO crash_aim VALUES (1, false) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION crash_aim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('crash_aim.slept', true), '') <> 'yes'
     AND (SELECT "on" FROM crash_aim WHERE id = 1) THEN
    PERFORM set_config('crash_aim.slept', 'yes', true);
    PERFORM pg_sleep(0.05);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS crash_aim ON person_msg;
DROP TRIGGER IF EXISTS crash_aim ON team_msg;
CREATE CONSTRAINT TRIGGER crash_aim AFTER INSERT ON person_msg
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION crash_aim();
CREATE CONSTRAINT TRIGGER crash_aim AFTER INSERT ON team_msg
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION crash_aim();
"""


def kill_in_commit(server: ServerProcess, within: float = 3.0) -> Hit | None:
    """PostgreSQL: SIGKILL ``server`` while one of its connections runs a (stretched) COMMIT."""
    db, pid = server.database, server.proc.pid
    if db.sql("SELECT to_regclass('crash_aim')") == [(None,)]:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(STRETCH_COMMITS)
    db.sql('UPDATE crash_aim SET "on" = true')
    started = time.monotonic()
    try:
        with db.engine.connect() as conn:
            while time.monotonic() - started < within:
                row = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND query ILIKE 'commit%%' AND wait_event = 'PgSleep'"
                ).scalar()
                conn.rollback()
                if row:
                    os.kill(pid, signal.SIGKILL)
                    return Hit(
                        "COMMIT", "pg_sleep in a deferred trigger", time.monotonic() - started
                    )
        os.kill(pid, signal.SIGKILL)
        return None
    finally:
        db.sql('UPDATE crash_aim SET "on" = false')


def aim_and_kill(server: ServerProcess, aim: str, rng: random.Random) -> Hit | None:
    """Kill ``server`` as ``aim`` says (blocking; run in a thread). None: not aimed, or the
    aim's window passed without a hit (the kill then fires at its end)."""
    pid, db = server.proc.pid, server.database
    if aim == "random":
        time.sleep(rng.uniform(0, 0.3))  # a random instant, on purpose
        return kill_when(pid, [], lambda _: False, 0)
    if db.backend == "sqlite":
        path = db.sync_url.removeprefix("sqlite:///")
        wanted = path + "-wal" if aim == "commit" else path
        return kill_when(pid, [pid], lambda p: p == wanted, 3.0)
    if aim == "wal":
        backends = _pids(
            db,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()",
        )
        return kill_when(pid, backends, lambda p: "/pg_wal/" in p, 3.0)
    return kill_in_commit(server)


async def kill_at_answer(server: ServerProcess, load: Load, within: float = 3.0) -> Hit | None:
    """SIGKILL ``server`` the moment the next ``chat_answer`` reaches a sender."""
    started = time.monotonic()
    answered = asyncio.get_running_loop().create_future()

    def on_answer() -> None:
        if not answered.done():
            os.kill(server.proc.pid, signal.SIGKILL)
            answered.set_result(time.monotonic() - started)

    load.on_answer = on_answer
    try:
        async with asyncio.timeout(within):
            return Hit("chat_answer", "a sender", await answered)
    except TimeoutError:
        os.kill(server.proc.pid, signal.SIGKILL)
        return None
    finally:
        load.on_answer = None


async def crash_run(
    server: KilledServer,
    kills: int,
    users: int = 6,
    extras: int = 3,
    rate: float = 60.0,
    seed: int | None = None,
    deadline: float = 60.0,
    between: tuple[float, float] = (0.3, 1.0),
) -> Result:
    """The whole run on a started server; ``server`` is stopped at the end."""
    rng = random.Random(seed)
    started = time.monotonic()
    result = Result(server.backend)
    ids = [await server.add_user(f"u{i}") for i in range(users)]
    extra_ids = [await server.add_user(f"x{i}") for i in range(extras)]
    load = Load(
        f"tcp://127.0.0.1:{server.port}",
        {u: server.token(u) for u in ids},
        extra_ids,
        rate=rate,
        seed=rng.randrange(1 << 30),
    )
    try:
        await load.start()
        load.run()
        aims = AIMS[server.backend]
        last: float | None = None  # when the previous kill landed
        for n in range(kills):
            aim = aims[n % len(aims)]
            if aim == "reconnect":  # as soon as one client is back: the others log in, resend
                await load.until(partial(load.any_online_since, last or 0.0), deadline)
            else:
                if last is not None:
                    await load.until(partial(load.online_since, last), deadline)
                    result.kills[-1].online = max(load.online_at.values()) - last
                await asyncio.sleep(rng.uniform(*between))  # the load runs a random while
            aimed = time.monotonic()
            if aim == "answers":
                hit = await kill_at_answer(server, load)
            elif aim == "reconnect":
                hit = Hit("reconnection", "the first client online", 0.0)
                server.proc.kill()
            else:
                hit = await asyncio.to_thread(aim_and_kill, server, aim, rng)
            server.proc.wait()
            last = time.monotonic() if hit is None else aimed + hit.waited
            load.records.kills.append(time.time() - (time.monotonic() - last))
            await asyncio.to_thread(server.restart, True)
            what = str(hit) if hit else "missed" if aim != "random" else "-"
            result.kills.append(Kill(aim, what, time.monotonic() - last, None))
        if last is not None:
            await load.until(partial(load.online_since, last), deadline)
            result.kills[-1].online = max(load.online_at.values()) - last
        await asyncio.sleep(rng.uniform(*between))
        await load.stop(deadline)
        await load.until(lambda: missing_deliveries(load.records) == 0, deadline)
    finally:
        await load.close()
        server.stop()
    result.records = load.records
    result.verdict = check(server.database, load.records)
    log = server.log.read_text()
    result.tracebacks = log.count("Traceback") + log.count(" ERROR ")
    result.first_start = server.starts[0]
    result.seconds = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--rate", type=float, default=60.0, help="sends per second per user")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--durability", choices=("fsync", "os"), default="fsync", help="the server's level"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the clients' reconnection warnings

    from bench.backends import Backend  # durable database servers, as the other benches use

    root = Path(tempfile.mkdtemp(prefix="imhub-crash-"))
    backend = Backend(args.backend, root)
    try:
        server = KilledServer(root / "server", backend.factory, durability=args.durability)
        result = asyncio.run(crash_run(server, args.kills, args.users, rate=args.rate,
                                       seed=args.seed))  # fmt: skip
    finally:
        backend.close()
    if result.ok():
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept for a look: {root}")
    for n, kill in enumerate(result.kills, 1):
        online = "-" if kill.online is None else f"{kill.online:.2f} s"
        print(f"kill {n:2}: {kill.aim:10} {kill.hit:45} listening after {kill.listening:.2f} s,"
              f" every client online after {online}")  # fmt: skip
    for problem in result.verdict.problems:
        print("PROBLEM:", problem)
    print(json.dumps(result.summary()))
    print(json.dumps({"kills_detail": [asdict(k) for k in result.kills]}))
    raise SystemExit(0 if result.ok() else 1)


if __name__ == "__main__":
    main()
