"""The optional state file: what a restarted application needs to lose nothing.

It keeps each conversation's handed-over cursor (the last ``seq`` the application finished
with), the messages sent but not yet answered (resent, with the same ``msgIdClient``, after a
restart), and the conversations the application had entered.

It is an SQLite database (the standard library's ``sqlite3``) in WAL mode with
``synchronous=NORMAL``: each change is one small transaction, so a send is saved before
``send_chat`` returns control without rewriting the whole state, and a committed change
survives the application being killed (a power loss may take the last moments; the server's
idempotency keys make a resend after that harmless). A state file in the JSON format of
earlier versions is read once and converted.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imhub.client.errors import StateFileError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (conv INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    n INTEGER PRIMARY KEY AUTOINCREMENT, msg_id_client TEXT UNIQUE NOT NULL, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entered (conv INTEGER PRIMARY KEY);
"""


@dataclass
class Saved:
    cursors: dict[int, int] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # in the order sent
    entered: list[int] = field(default_factory=list)


@dataclass
class Changes:
    """What changed since the last save."""

    cursors: dict[int, int | None] = field(default_factory=dict)  # None: forgotten
    outbox_put: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox_del: set[str] = field(default_factory=set)
    entered: list[int] | None = None  # the whole set, when it changed

    def empty(self) -> bool:
        return not (self.cursors or self.outbox_put or self.outbox_del) and self.entered is None

    @property
    def urgent(self) -> bool:
        """A send entered the outbox: save it before the send returns control."""
        return bool(self.outbox_put)


class StateFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None

    def load(self) -> Saved:
        """What was saved; takes the file for this client until ``close``. Raises
        ``StateFileError``."""
        self._take()
        try:
            return self._load()
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.close()
            raise StateFileError(f"{self.path} is not an imhub state file ({exc})") from None

    def _take(self) -> None:
        if self._lock is not None or str(self.path) == ":memory:":
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateFileError(f"{self.path} is in use by another client") from None
        self._lock = fd

    def _load(self) -> Saved:
        legacy = self._legacy()
        db = self._open()
        if legacy is not None:
            self.apply(
                Changes(
                    cursors=dict(legacy.cursors),
                    outbox_put={str(p["msgIdClient"]): p for p in legacy.outbox},
                    entered=legacy.entered,
                )
            )
            return legacy
        return Saved(
            cursors={c: s for c, s in db.execute("SELECT conv, seq FROM cursor")},
            outbox=[json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY n")],
            entered=[c for (c,) in db.execute("SELECT conv FROM entered ORDER BY conv")],
        )

    def apply(self, changes: Changes) -> None:
        """Save ``changes`` in one transaction."""
        db = self._open()
        with db:
            for conv, seq in changes.cursors.items():
                if seq is None:
                    db.execute("DELETE FROM cursor WHERE conv = ?", (conv,))
                else:
                    db.execute("INSERT OR REPLACE INTO cursor VALUES (?, ?)", (conv, seq))
            db.executemany(
                "INSERT OR IGNORE INTO outbox (msg_id_client, payload) VALUES (?, ?)",
                [(mid, json.dumps(p)) for mid, p in changes.outbox_put.items()],
            )
            db.executemany(
                "DELETE FROM outbox WHERE msg_id_client = ?", [(m,) for m in changes.outbox_del]
            )
            if changes.entered is not None:
                db.execute("DELETE FROM entered")
                db.executemany("INSERT INTO entered VALUES (?)", [(c,) for c in changes.entered])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and not {"cursor", "outbox", "entered"} <= tables:
                db.close()
                raise ValueError(f"it holds other tables: {', '.join(sorted(tables))}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            db.isolation_level = "DEFERRED"  # `with db:` makes each save one transaction
            self._db = db
        return self._db

    def _legacy(self) -> Saved | None:
        """A JSON state file of earlier versions: read it and make room for the database."""
        if not self.path.exists() or self.path.read_bytes()[:1] != b"{":
            return None
        raw = json.loads(self.path.read_text())
        saved = Saved(
            cursors={int(k): int(v) for k, v in raw.get("cursors", {}).items()},
            outbox=[dict(p) for p in raw.get("outbox", [])],
            entered=[int(c) for c in raw.get("entered", [])],
        )
        for payload in saved.outbox:
            str(payload["msgIdClient"])  # each one names its message
        self.path.unlink()  # read whole: the database takes its place
        return saved
