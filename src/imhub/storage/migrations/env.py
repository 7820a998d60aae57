"""Alembic environment: runs migrations on the async engine given by ``imhub migrate``."""

from __future__ import annotations

import asyncio
import logging

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from imhub.storage.migrate import (
    MigrationError,
    PrimaryKeyNameNote,
    lock_migrations,
    migration_engine,
)
from imhub.storage.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    lock_migrations(connection)  # another run waits here, then finds nothing left to do
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = migration_engine(url)
    note = PrimaryKeyNameNote()
    logging.getLogger("asyncmy").addFilter(note)
    try:
        # A failure to connect is a SQLAlchemyError from here: "cannot open the database".
        async with engine.connect() as conn:
            try:
                await conn.run_sync(_run)
                await conn.commit()
            except (SQLAlchemyError, TimeoutError) as exc:
                raise MigrationError(str(getattr(exc, "orig", None) or exc)) from exc
    finally:
        logging.getLogger("asyncmy").removeFilter(note)
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_run_async(context.config.attributes["url"]))
