"""Faults in a real SQLite database: triggers that make the write path's statements fail.

``RAISE(ABORT)`` in a trigger fails the statement that fired it, inside whatever transaction it
belongs to, exactly as a constraint, a full disk or a driver error would: the fault tests of
the writer (in-process) and of the server (over sockets) use them to fail writes at random
(``rate`` percent of write statements) or whenever a message's body is ``poison``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Statements of the write path that a fault can hit: new messages, new pair and member rows,
# sequence and read-position saves, membership changes, groups, recalls.
_TARGETS = (
    ("insert", "person_msg"),
    ("insert", "team_msg"),
    ("insert", "chat"),
    ("update", "chat"),
    ("insert", "team"),
    ("update", "team"),
    ("update", "person_msg"),
    ("update", "team_msg"),
)


def install_faults(path: Path) -> None:
    """Add the fault triggers to the database at ``path`` (faults off)."""
    with sqlite3.connect(path) as db:
        db.execute("create table fault (rate integer not null, poison text)")
        db.execute("insert into fault values (0, null)")
        for verb, table in _TARGETS:
            poisoned = (
                " or new.body = (select poison from fault)"
                if verb == "insert" and table.endswith("_msg")
                else ""
            )
            db.execute(
                f"create trigger fault_{verb}_{table} before {verb} on {table} "
                f"when abs(random()) % 100 < (select rate from fault){poisoned} "
                "begin select raise(abort, 'injected fault'); end"
            )
    db.close()


def set_faults(path: Path, rate: int = 0, poison: str | None = None) -> None:
    """Fail ``rate`` percent of write statements, and every message whose body is ``poison``."""
    with sqlite3.connect(path) as db:
        db.execute("update fault set rate = ?, poison = ?", (rate, poison))
    db.close()
