"""The migrations build exactly the schema the models describe, from an empty database and
from every earlier revision, on every backend, and downgrade cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from imhub.storage.migrate import LOCK_KEY, LOCK_NAME, alembic_config, upgrade
from imhub.storage.models import Base
from tests.databases import Database, Databases
from tests.services import wait_until


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


@pytest.mark.parametrize("start", ["empty", *revisions()[:-1]])
def test_migrated_schema_matches_the_models(
    tmp_path: Path, databases: Databases, start: str
) -> None:
    db = databases.empty(tmp_path)
    if start != "empty":
        command.upgrade(alembic_config(db.url), start)
    upgrade(db.url)
    assert schema_diff(db) == []
    db.dispose()


def test_every_migration_downgrades(tmp_path: Path, databases: Databases) -> None:
    db = databases.empty(tmp_path)
    upgrade(db.url)
    command.downgrade(alembic_config(db.url), "base")
    assert inspect(db.engine).get_table_names() == ["alembic_version"]
    db.dispose()


def test_mysql_text_columns_compare_byte_for_byte(tmp_path: Path, databases: Databases) -> None:
    """On MariaDB every text column is utf8mb4 with a binary no-pad collation, and bodies are
    MEDIUMTEXT (migration 0004)."""
    if databases.name != "mariadb":
        pytest.skip("MySQL/MariaDB only")
    db = databases.empty(tmp_path)
    upgrade(db.url)
    name = db.url.rsplit("/", 1)[1].split("?")[0]
    columns = db.sql(
        "select table_name, column_name, character_set_name, collation_name, data_type"
        " from information_schema.columns where table_schema = ? and collation_name is not null"
        " and table_name != 'alembic_version'",
        name,
    )
    assert columns
    assert {(c[2], c[3]) for c in columns} == {("utf8mb4", "utf8mb4_nopad_bin")}, columns
    assert {c[0] for c in columns if c[1] == "body"} == {"person_msg", "team_msg", "notice"}
    assert {c[4] for c in columns if c[1] == "body"} == {"mediumtext"}
    db.dispose()


def test_memberships_are_backfilled_from_the_member_rows(
    tmp_path: Path, databases: Databases
) -> None:
    """Migration 0005: each group member row (present or departed) becomes one membership
    (its last, all that was kept); one-to-one rows none."""
    db = databases.empty(tmp_path)
    command.upgrade(alembic_config(db.url), "0004")
    db.sql(
        "insert into chat (event_type, from_user_id, to_user_id, team_id, join_seq, leave_seq,"
        " delete_flag, from_unread_num, to_unread_num, last_seq, from_read_seq, to_read_seq)"
        " values (1, 0, 7, 3, 1, 0, ?, 0, 0, 0, 0, 0), (1, 0, 8, 3, 4, 9, ?, 0, 0, 0, 0, 8),"
        " (0, 7, 8, 0, 0, 0, ?, 0, 0, 5, 5, 5)",
        False,
        True,
        False,
    )
    upgrade(db.url)
    spans = db.sql(
        "select team_id, user_id, join_seq, leave_seq from team_membership order by user_id"
    )
    assert [tuple(int(v) for v in r) for r in spans] == [(3, 7, 1, 0), (3, 8, 4, 9)]


def _migrate(url: str, folder: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMHUB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "imhub", "migrate", "--data-dir", str(folder),
         "--database-url", url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_two_migrations_at_once_both_succeed(tmp_path: Path, databases: Databases) -> None:
    """Two ``imhub migrate`` started together on an empty database: the lock makes the second
    wait for the first, find nothing left to do, and succeed (before: one of them failed
    creating the same type or table again, said as "cannot open the database")."""
    db = databases.empty(tmp_path)
    runs = [_migrate(db.url, tmp_path / f"d{n}") for n in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for out in outputs:  # no asyncmy note about the version table's primary key either
        assert out.splitlines() == [out.splitlines()[0]], out
        assert out.startswith("database at the newest migration"), out
    assert schema_diff(db) == []
    db.dispose()


def test_a_failed_migration_says_so(tmp_path: Path, databases: Databases) -> None:
    """A migration that fails once the database is open says "migration failed", in one line,
    not "cannot open the database" (here: a table of the first migration already there)."""
    db = databases.empty(tmp_path)
    db.sql("create table chat (id integer primary key)")
    out, _ = (run := _migrate(db.url, tmp_path / "d")).communicate(timeout=60)
    assert run.returncode == 1, out
    assert out.startswith("migration failed: ") and len(out.splitlines()) == 1, out
    assert "cannot open the database" not in out and "Traceback" not in out
    db.dispose()


def test_a_migration_waits_for_the_one_holding_the_lock(
    tmp_path: Path, databases: Databases
) -> None:
    """Deterministic half of the race above: while another session holds the migration lock,
    ``imhub migrate`` waits for it (seen in the database), then runs."""
    if databases.name == "sqlite":
        pytest.skip("SQLite: BEGIN IMMEDIATE, covered by the test above")
    db = databases.empty(tmp_path)
    if databases.name == "postgresql":
        hold = f"select pg_advisory_lock({LOCK_KEY})"
        waiting = "select count(*) from pg_locks where locktype = 'advisory' and not granted"
    else:
        hold = f"select get_lock({LOCK_NAME}, 0)"
        waiting = (
            "select count(*) from information_schema.processlist"
            " where info like 'SELECT GET_LOCK(%'"
        )
    with db.engine.connect() as holder:
        holder.exec_driver_sql(hold)
        run = _migrate(db.url, tmp_path / "d")
        wait_until(lambda: db.count(waiting) == 1 or run.poll() is not None, "a waiting migrate")
        assert run.poll() is None, run.communicate()[0]  # it waits, not done
    out, _ = run.communicate(timeout=60)  # the holder's session ended: its lock is free
    assert run.returncode == 0, out
    assert schema_diff(db) == []
    db.dispose()
