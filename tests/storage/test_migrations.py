"""The migrations build exactly the schema the models describe, and downgrade cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from imhub.storage.migrate import alembic_config, upgrade
from imhub.storage.models import Base


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'imhub.db'}"
    upgrade(url)
    engine = create_engine(url.replace("+aiosqlite", ""))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_migration_downgrades(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'imhub.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url.replace("+aiosqlite", ""))
    assert inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
