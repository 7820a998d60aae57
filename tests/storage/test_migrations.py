"""The migrations build exactly the schema the models describe, from an empty database and
from every earlier revision, on every backend, and downgrade cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from imhub.storage.migrate import alembic_config, upgrade
from imhub.storage.models import Base
from tests.databases import Database, Databases


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
