"""SIGKILL under load, short form: three kills of a real server per backend (one aimed during
a commit, one during a SQLite checkpoint or as answers stream, one at random), a restart on
the same database after each, and the senders' records checked against the database
(``bench.crash``; the long form is ``python -m bench.crash --kills 20``); on SQLite also with
``durability = os``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.crash import KilledServer, Result, crash_run
from bench.crash_check import check
from tests.databases import Databases

KILLS = 3


async def run(
    backend: str, tmp_path: Path, factories: Callable[[str], Databases], durability: str
) -> tuple[KilledServer, Result]:
    server = KilledServer(tmp_path / "server", factories(backend), durability=durability)
    result = await crash_run(server, KILLS, seed=13, deadline=30, between=(0.2, 0.5))
    summary = result.summary()
    assert result.verdict.problems == [], summary
    assert summary["kills"] == KILLS
    assert summary["acknowledged"] > 100, summary  # the kills landed in a real load
    assert summary["stored"] == summary["acknowledged"], summary
    assert summary["integrity"] == "ok", summary
    assert summary["tracebacks"] == 0, server.log.read_text()[-3000:]
    commit = result.kills[0]
    assert commit.aim == "commit" and commit.hit != "missed", result.kills
    if backend == "postgresql":
        # The stretched COMMIT completes after the kill: its messages are stored, their
        # answers died with the server, and the resends are answered from the stored copies.
        assert summary["stored_before_a_kill_answered_after"] > 0, summary
    return server, result


# About 15-20 s each here, mostly four server start-ups; twice that on a machine loaded
# by other work, so past the default 60 s limit is where it would fail.
@pytest.mark.timeout(150)
# Durability os (SQLite synchronous=NORMAL: the commit is not fsynced before its answer) must
# keep the same promise against a kill of the process: the commit is in the OS's hands.
@pytest.mark.parametrize(
    ("backend", "durability"), [("sqlite", "fsync"), ("postgresql", "fsync"), ("sqlite", "os")]
)
async def test_sigkill_under_load_loses_nothing_acknowledged(
    backend: str,
    durability: str,
    tmp_path: Path,
    database_factories: Callable[[str], Databases],
) -> None:
    server, result = await run(backend, tmp_path, database_factories, durability)
    if backend == "sqlite":
        # The verdict is not blind: after one acknowledged message is deleted from the
        # database, the same check finds it lost and its conversation's sequence broken.
        db = server.database
        ((victim,),) = db.sql(
            "SELECT max(person_msg_id) FROM person_msg WHERE msg_type = 3 AND cancel_flag = ?",
            False,
        )
        db.sql("DELETE FROM person_msg WHERE person_msg_id = ?", victim)
        after = check(db, result.records)
        assert (after.lost, after.gaps) == (1, 1), after.problems
