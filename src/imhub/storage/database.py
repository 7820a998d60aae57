"""Engine creation, with the SQLite settings that make the embedded default safe and fast."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite: WAL (readers never block the writer), full fsync on commit
    (an acknowledged message survives power loss), and a busy timeout for a second process
    such as ``imhub user add`` writing beside a running server."""
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

    return engine
